# runner: a slim image with the CLI as its entry point, run as an unprivileged user.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
COPY pyproject.toml README.md ./
COPY runner ./runner
RUN pip install --no-cache-dir . \
    && useradd --create-home --uid 10001 runner

USER 10001
WORKDIR /home/runner
ENTRYPOINT ["runner"]
CMD ["--help"]
