# streamline as a container image: the package, its schemas, topologies and examples.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY src ./src
RUN pip install --no-cache-dir .
COPY schemas ./schemas
COPY topologies ./topologies
COPY examples ./examples
ENV PYTHONUNBUFFERED=1
CMD ["streamline", "--help"]
