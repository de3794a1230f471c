# bnbench on an NVIDIA GPU: TensorFlow's pip route (tensorflow[and-cuda] brings CUDA and cuDNN
# as wheels), so the host needs only the driver and the NVIDIA container toolkit:
#   docker build -t bnbench . && docker run --gpus all -v "$PWD:/work" bnbench
# Installs from the same uv.lock as local installs and CI.
FROM python:3.11.14-slim-bookworm

# git: DVC tracks the repository it runs in; tini: signals reach dvc and its stage processes.
RUN apt-get update \
    && apt-get install -y --no-install-recommends git=1:2.39.* tini=0.19.* \
    && rm -rf /var/lib/apt/lists/*

RUN pip install --no-cache-dir uv==0.13.9 \
    && useradd --create-home --uid 1000 bnbench

ENV UV_PROJECT_ENVIRONMENT=/opt/venv \
    UV_LINK_MODE=copy \
    PATH=/opt/venv/bin:$PATH \
    PYTHONPATH=/work \
    TF_FORCE_GPU_ALLOW_GROWTH=true \
    BNBENCH_DEVICE=gpu \
    MPLCONFIGDIR=/tmp/matplotlib

# Dependencies first, from the lock alone, so code changes do not reinstall them.
COPY pyproject.toml uv.lock README.md /src/
WORKDIR /src
RUN mkdir pipeline && touch pipeline/__init__.py \
    && uv sync --frozen --no-dev --extra gpu --no-install-project \
    && chown -R bnbench /opt/venv

COPY --chown=bnbench . /src
RUN uv sync --frozen --no-dev --extra gpu

USER 1000:1000
# The repository (with .git, params.yaml and the DVC cache) is mounted here; PYTHONPATH makes
# every stage, in quick/ too, run the mounted code rather than the copy installed above.
WORKDIR /work
RUN git config --global --add safe.directory /work
ENTRYPOINT ["tini", "--"]
CMD ["dvc", "repro"]
