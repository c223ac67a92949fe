FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY lifeline lifeline
COPY ingest ingest
COPY detectors detectors
COPY alerting alerting
COPY archive archive
COPY dashboard dashboard
COPY simulators simulators
RUN pip install --no-cache-dir .
EXPOSE 8000
CMD ["lifeline", "up"]
