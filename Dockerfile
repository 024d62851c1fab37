# Nectar API and worker image. The same image runs `nectar serve` and `nectar worker`.
FROM python:3.11-slim AS base
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app
RUN useradd --create-home --uid 10001 nectar
COPY pyproject.toml README.md alembic.ini ./
COPY src ./src
COPY workers ./workers
COPY alembic ./alembic
COPY config ./config
# Editable: migrations and config are found next to the package (/app/alembic, /app/config).
RUN pip install --no-cache-dir -e .
USER nectar
ENV NECTAR_HOST=0.0.0.0 NECTAR_PORT=8000
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --retries=5 \
  CMD python -c "import urllib.request,sys; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2)" || exit 1
CMD ["sh", "-c", "nectar db upgrade && nectar serve --no-access-log"]
