# PostgreSQL 15 with PL/Python and pldiffix installed into the default database on first start.
FROM postgres:15-bookworm

RUN apt-get update \
 && apt-get install -y --no-install-recommends postgresql-plpython3-15 python3-numpy python3-venv \
 && rm -rf /var/lib/apt/lists/*

COPY pyproject.toml README.md /opt/pldiffix/
COPY sql /opt/pldiffix/sql
COPY plpython /opt/pldiffix/plpython
COPY installer /opt/pldiffix/installer
COPY tools /opt/pldiffix/tools
COPY proxy /opt/pldiffix/proxy
RUN python3 -m venv /opt/pldiffix/.venv \
 && /opt/pldiffix/.venv/bin/pip install --no-cache-dir -e /opt/pldiffix \
 && printf '#!/bin/sh\nset -e\n/opt/pldiffix/.venv/bin/pldiffix install --dsn "host=/var/run/postgresql user=$POSTGRES_USER dbname=$POSTGRES_DB"\n' \
    > /docker-entrypoint-initdb.d/50-pldiffix.sh \
 && chmod +x /docker-entrypoint-initdb.d/50-pldiffix.sh
