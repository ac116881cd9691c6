# pysfu: a pure-Python WebRTC SFU.
#   docker build -t pysfu .
#   docker run --rm -p 7880:7880 -p 7882-7883:7882-7883/udp pysfu \
#       serve --host 0.0.0.0 --workers 2 --public-address <host IP>
# Media: one UDP port per worker, 7882 + worker index (publish one per --workers).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
RUN useradd --create-home --uid 10001 pysfu
WORKDIR /app

COPY pyproject.toml README.md ./
COPY sfu ./sfu
COPY signaling ./signaling
COPY static ./static
RUN pip install --upgrade pip && pip install . && rm -rf sfu signaling static

USER pysfu
EXPOSE 7880 7882/udp
ENTRYPOINT ["pysfu"]
CMD ["serve", "--host", "0.0.0.0"]
