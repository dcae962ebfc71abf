#!/bin/sh
# Creates the extra databases of the compose stack (docker-compose.yml, service `postgres`).
# The official postgres image runs this once, on an empty data directory, after creating
# $POSTGRES_DB (the application database). EXTRA_DATABASES is set in docker-compose.yml.
set -eu
for database in $EXTRA_DATABASES; do
    echo "create-databases: creating database $database"
    psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
        -c "CREATE DATABASE \"$database\" OWNER \"$POSTGRES_USER\""
done
