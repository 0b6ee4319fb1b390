FROM python:3.11-slim
WORKDIR /app
# The versions that CI tested (requirements/runtime.lock), then the project without
# resolving again: a new release of a dependency cannot change what this image runs.
COPY requirements/runtime.lock ./requirements/runtime.lock
RUN pip install --no-cache-dir -r requirements/runtime.lock
COPY pyproject.toml README.md ./
COPY src ./src
RUN pip install --no-cache-dir --no-deps .
RUN useradd --create-home tryon && mkdir -p /data && chown tryon /data
USER tryon
ENV TRYON_DATA_DIR=/data
ENTRYPOINT ["tryon"]
CMD ["worker"]
