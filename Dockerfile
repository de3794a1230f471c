# bnbench's image: the environment that uv.lock pins, nothing else. The repository is mounted at
# /work and its own code runs, so a code change never needs a rebuild; the MLflow server in
# compose.yaml runs from this image too. Two variants, from this one file:
#   docker build -t bnbench:gpu .                          # NVIDIA GPU: TensorFlow's CUDA wheels (the gpu extra)
#   docker build --build-arg VARIANT=cpu -t bnbench:cpu .  # any machine
# The GPU variant needs only the driver and the NVIDIA container toolkit on the host. compose.yaml
# runs both (docs/operations.md, "In a container"); by hand, as the host user so that files stay theirs:
#   docker run --rm --gpus all -e BNBENCH_DEVICE=gpu --user "$(id -u):$(id -g)" -v "$PWD:/work" bnbench:gpu
# Build arguments:
#   BASE_IMAGE       a Debian 12 (bookworm) image; the public one by default, a locally built one
#                    where no registry is reachable (the tests do that)
#   EXTRA_CA_CERTS   PEM text of certificates to trust while installing, for builds behind a proxy
#                    that re-signs TLS; empty by default
ARG BASE_IMAGE=debian:bookworm-slim

# Build stage: uv installs exactly what uv.lock pins into /opt/venv; uv itself stays behind.
FROM ${BASE_IMAGE} AS build
ARG VARIANT=gpu
ARG EXTRA_CA_CERTS=""
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates=2025* python3.11=3.11.2-* python3.11-venv=3.11.2-* \
    && rm -rf /var/lib/apt/lists/*
RUN if [ -n "$EXTRA_CA_CERTS" ]; then \
      printf '%s\n' "$EXTRA_CA_CERTS" > /usr/local/share/ca-certificates/build-extra.crt && update-ca-certificates; \
    fi
ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt \
    PIP_CERT=/etc/ssl/certs/ca-certificates.crt \
    UV_PROJECT_ENVIRONMENT=/opt/venv \
    UV_PYTHON=/usr/bin/python3.11 \
    UV_PYTHON_DOWNLOADS=never \
    UV_LINK_MODE=copy \
    UV_NO_CACHE=1
RUN python3.11 -m venv /opt/uv && /opt/uv/bin/pip install --no-cache-dir uv==0.13.9
WORKDIR /src
COPY pyproject.toml uv.lock ./
# --no-install-project: the pipeline's code comes from the mounted repository (PYTHONPATH below).
RUN case "$VARIANT" in \
      gpu) set -- --extra gpu ;; \
      cpu) set -- ;; \
      *) echo "VARIANT=$VARIANT: use gpu (the default) or cpu" >&2; exit 1 ;; \
    esac \
    && /opt/uv/bin/uv sync --frozen --no-dev --no-install-project "$@"

FROM ${BASE_IMAGE}
# git: DVC tracks the repository it runs in; tini: signals reach dvc and its stage processes;
# ca-certificates: the datasets' canonical locations are https.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates=2025* git=1:2.39.* python3.11=3.11.2-* tini=0.19.* \
    && rm -rf /var/lib/apt/lists/* \
    && git config --system --add safe.directory '*' \
    && useradd --uid 1000 --create-home bnbench \
    && install -d -m 1777 /home/bnbench/.cache \
    && chmod 1777 /home/bnbench \
    && install -d -o bnbench -g bnbench /mlflow
COPY --from=build /opt/venv /opt/venv

# The container runs as the host user's uid (compose.yaml), which need not exist here: HOME and
# ~/.cache (made here, else docker makes it root's when it mounts the download cache below it) are
# writable by any uid, and USER/LOGNAME name the user for Python's getpass (DVC, MLflow's run author).
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONPATH=/work \
    HOME=/home/bnbench \
    USER=bnbench \
    LOGNAME=bnbench \
    TF_FORCE_GPU_ALLOW_GROWTH=true
USER 1000:1000
WORKDIR /work
ENTRYPOINT ["tini", "--"]
CMD ["dvc", "repro"]
