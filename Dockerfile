# pysfu: a pure-Python WebRTC SFU.
#   docker build -t pysfu .
#   docker run --rm -p 7880:7880 -p 50000-50100:50000-50100/udp pysfu \
#       serve --host 0.0.0.0 --udp-port-range 50000-50100 --public-address <host IP>
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
EXPOSE 7880 50000-50100/udp
ENTRYPOINT ["pysfu"]
CMD ["serve", "--host", "0.0.0.0", "--udp-port-range", "50000-50100"]
