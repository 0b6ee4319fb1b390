FROM python:3.11-slim
WORKDIR /app
# The versions that CI tested (requirements/runtime.lock, with the [flower] extra that
# compose's `flower` service runs), then the project without
# resolving again: a new release of a dependency cannot change what this image runs.
COPY requirements/runtime.lock ./requirements/runtime.lock
RUN pip install --no-cache-dir -r requirements/runtime.lock
COPY pyproject.toml README.md ./
COPY src ./src
RUN pip install --no-cache-dir --no-deps .
# The runtime user and every path the image writes, owned by it: the data directory
# (TRYON_DATA_DIR: metrics of the pool, the embedded defaults) and the mount point of the
# compose `results` volume. A named volume takes the ownership of the image's directory
# when it is first mounted; a mount point the image lacks is created by root, and the
# copies of results would then fail for `tryon`.
RUN useradd --create-home --uid 10001 tryon \
    && mkdir -p /data/results \
    && chown -R tryon:tryon /data
USER tryon
ENV TRYON_DATA_DIR=/data
ENTRYPOINT ["tryon"]
CMD ["worker"]
