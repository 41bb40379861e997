# The project's image: the `torch` command with the ingest worker, API and simulator.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY torch ./torch
COPY ingest ./ingest
COPY api ./api
COPY migrations ./migrations
COPY simulators ./simulators
RUN pip install --no-cache-dir . && useradd --system torch
USER torch
ENTRYPOINT ["torch"]
CMD ["--help"]
