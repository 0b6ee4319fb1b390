FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY src ./src
RUN pip install --no-cache-dir .
RUN useradd --create-home tryon && mkdir -p /data && chown tryon /data
USER tryon
ENV TRYON_DATA_DIR=/data
ENTRYPOINT ["tryon"]
CMD ["worker"]
