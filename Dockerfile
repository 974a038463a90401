# syntax=docker/dockerfile:1
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1

WORKDIR /src
COPY . .
RUN pip install . \
    && useradd --system --create-home --uid 10001 keyledger \
    && install -d -o keyledger -g keyledger -m 0700 /var/lib/keyledger

USER keyledger
WORKDIR /var/lib/keyledger
ENV KEYLEDGER_DATA_DIR=/var/lib/keyledger \
    KEYLEDGER_HOST=0.0.0.0 \
    KEYLEDGER_PORT=8080
EXPOSE 8080

ENTRYPOINT ["keyledger"]
CMD ["run", "--host", "0.0.0.0"]
