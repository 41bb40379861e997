# The project's image: the `torch` command with the ingest worker, API and simulator,
# and the web app built from the npm registry's packages.
FROM node:20-slim AS web
WORKDIR /build/web
COPY web/package.json web/package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY web ./
COPY simulators/data ../simulators/data
RUN node build.mjs

FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY torch ./torch
COPY ingest ./ingest
COPY api ./api
COPY migrations ./migrations
COPY simulators ./simulators
COPY --from=web /build/web/dist ./web/dist
ENV TORCH_WEB_DIR=/app/web/dist
# numba keeps the compiled loops of torch/bounds.py here: site-packages is not writable by
# the service's user, and a cache with nowhere to go is an error
ENV NUMBA_CACHE_DIR=/tmp/numba-cache
RUN pip install --no-cache-dir . && useradd --system torch
USER torch
ENTRYPOINT ["torch"]
CMD ["--help"]
