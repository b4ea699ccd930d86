# runner: a slim image with the CLI as its entry point, run as an unprivileged user.
# The base is pinned by digest (python:3.11-slim; to move it on, read the tag's current digest with
# `docker buildx imagetools inspect python:3.11-slim` and replace it here). Everything is installed
# from the runtime lock (pip and setuptools included), each file checked against its hash; the
# project itself is then built with that setuptools, without fetching more.
FROM python:3.11-slim@sha256:9c900dea9e8fb7e16277c179b555cc72d29a352dbc33cff48ad5a0412fd5bfc7

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
COPY requirements.lock pyproject.toml README.md ./
COPY runner ./runner
RUN pip install --no-cache-dir --require-hashes -r requirements.lock \
    && pip install --no-cache-dir --no-deps --no-build-isolation . \
    && useradd --create-home --uid 10001 runner \
    && install -d -m 0700 -o runner -g runner /data

USER 10001
# The journal (.runner/journal.db under the working folder) and the packages (--download
# /data/packages) live on a volume: they outlive the container, and a rerun picks up from them.
WORKDIR /data
VOLUME ["/data"]
ENTRYPOINT ["runner"]
CMD ["--help"]
