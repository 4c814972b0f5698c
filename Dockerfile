# streamline as a container image: the package, its schemas, topologies and examples.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY src ./src
RUN pip install --no-cache-dir .
COPY schemas ./schemas
COPY topologies ./topologies
COPY examples ./examples
# An unprivileged user owning the state directory (a volume in docker-compose.yml, a
# PersistentVolumeClaim in k8s/): `streamline run --state-dir /var/lib/streamline/state`.
RUN groupadd --system --gid 10001 streamline \
    && useradd --system --uid 10001 --gid 10001 --no-create-home streamline \
    && mkdir -p /var/lib/streamline/state \
    && chown -R 10001:10001 /var/lib/streamline
USER 10001:10001
ENV PYTHONUNBUFFERED=1
CMD ["streamline", "--help"]
