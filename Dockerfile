# runner: a slim image with the CLI as its entry point, run as an unprivileged user.
# Everything is installed from the runtime lock (pip and setuptools included), each file checked
# against its hash; the project itself is then built with that setuptools, without fetching more.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
COPY requirements.lock pyproject.toml README.md ./
COPY runner ./runner
RUN pip install --no-cache-dir --require-hashes -r requirements.lock \
    && pip install --no-cache-dir --no-deps --no-build-isolation . \
    && useradd --create-home --uid 10001 runner

USER 10001
WORKDIR /home/runner
ENTRYPOINT ["runner"]
CMD ["--help"]
