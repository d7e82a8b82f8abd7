-- source: grafana/grafana/public/app/plugins/datasource/grafana-postgresql-datasource/postgresMetaQuery.ts (getVersion, used by PostgresDatasource.getVersion from configuration/useAutoDetectFeatures.ts version detection)
-- expect: rows>=1
SELECT current_setting('server_version_num')::int/100 as version;

-- source: grafana/grafana/public/app/plugins/datasource/grafana-postgresql-datasource/postgresMetaQuery.ts (getTimescaleDBVersion, used by useAutoDetectFeatures.ts when version >= 906)
-- expect: ok
SELECT extversion FROM pg_extension WHERE extname = 'timescaledb';

-- source: grafana/grafana/public/app/plugins/datasource/grafana-postgresql-datasource/postgresMetaQuery.ts (showTables() without schema, used by PostgresDatasource.fetchTables for the query builder table picker and SQL completion)
-- expect: contains=otel_logs_and_spans
SELECT
    CASE WHEN 
          quote_ident(table_schema) IN (
          SELECT
            CASE WHEN trim(s[i]) = '"$user"' THEN user ELSE trim(s[i]) END
          FROM
            generate_series(
              array_lower(string_to_array(current_setting('search_path'),','),1),
              array_upper(string_to_array(current_setting('search_path'),','),1)
            ) as i,
            string_to_array(current_setting('search_path'),',') s
          )
      THEN quote_ident(table_name)
      ELSE quote_ident(table_schema) || '.' || quote_ident(table_name)
    END AS "table"
    FROM information_schema.tables
    WHERE quote_ident(table_schema) NOT IN ('information_schema',
                             'pg_catalog',
                             '_timescaledb_cache',
                             '_timescaledb_catalog',
                             '_timescaledb_internal',
                             '_timescaledb_config',
                             'timescaledb_information',
                             'timescaledb_experimental')
    ORDER BY CASE WHEN 
          quote_ident(table_schema) IN (
          SELECT
            CASE WHEN trim(s[i]) = '"$user"' THEN user ELSE trim(s[i]) END
          FROM
            generate_series(
              array_lower(string_to_array(current_setting('search_path'),','),1),
              array_upper(string_to_array(current_setting('search_path'),','),1)
            ) as i,
            string_to_array(current_setting('search_path'),',') s
          ) THEN 0 ELSE 1 END, 1;

-- source: grafana/grafana/public/app/plugins/datasource/grafana-postgresql-datasource/postgresMetaQuery.ts (showTables(schema) with schema = 'public')
-- expect: contains=otel_logs_and_spans
SELECT quote_ident(table_name) AS "table"
      FROM information_schema.tables
      WHERE quote_ident(table_schema) = 'public'
      ORDER BY 1;

-- source: grafana/grafana/public/app/plugins/datasource/grafana-postgresql-datasource/postgresMetaQuery.ts (getSchema(table) with table = 'otel_logs_and_spans', used by PostgresDatasource.fetchFields for the query builder column picker)
-- expect: contains=duration
SELECT quote_ident(column_name) AS "column", data_type AS "type"
    FROM information_schema.columns
    WHERE
      CASE WHEN array_length(parse_ident('otel_logs_and_spans'),1) = 2
        THEN quote_ident(table_schema) = (parse_ident('otel_logs_and_spans'))[1]
          AND quote_ident(table_name) = (parse_ident('otel_logs_and_spans'))[2]
        ELSE quote_ident(table_name) = 'otel_logs_and_spans'
          AND 
          quote_ident(table_schema) IN (
          SELECT
            CASE WHEN trim(s[i]) = '"$user"' THEN user ELSE trim(s[i]) END
          FROM
            generate_series(
              array_lower(string_to_array(current_setting('search_path'),','),1),
              array_upper(string_to_array(current_setting('search_path'),','),1)
            ) as i,
            string_to_array(current_setting('search_path'),',') s
          )
      END;

-- source: grafana/grafana/public/app/plugins/datasource/grafana-postgresql-datasource/postgresMetaQuery.ts (showSchemas)
-- expect: rows>=1
SELECT schema_name AS "name"
    FROM information_schema.schemata
    WHERE schema_name NOT IN ('information_schema',
                              'pg_catalog',
                              'pg_toast',
                              '_timescaledb_cache',
                              '_timescaledb_catalog',
                              '_timescaledb_internal',
                              '_timescaledb_config',
                              'timescaledb_information',
                              'timescaledb_experimental')
    ORDER BY schema_name;

-- source: grafana/grafana/pkg/tsdb/grafana-postgresql-datasource/schema.go (postgresSchema.querySchemas)
-- expect: rows>=1
SELECT schema_name FROM information_schema.schemata
		 WHERE schema_name NOT LIKE 'pg_%' AND schema_name != 'information_schema'
		 ORDER BY schema_name;

-- source: grafana/grafana/pkg/tsdb/grafana-postgresql-datasource/schema.go (postgresSchema.queryTables, $1 = 'public')
-- expect: contains=otel_logs_and_spans
SELECT table_name FROM information_schema.tables
		 WHERE table_schema = 'public' AND table_type IN ('BASE TABLE', 'VIEW')
		 ORDER BY table_name;

-- source: grafana/grafana/pkg/tsdb/grafana-postgresql-datasource/schema.go (postgresSchema.queryColumns, $1 = 'public', $2 = 'otel_logs_and_spans')
-- expect: rows>=1
SELECT column_name, data_type, udt_name, numeric_precision, numeric_scale
		 FROM information_schema.columns
		 WHERE table_schema = 'public' AND table_name = 'otel_logs_and_spans'
		 ORDER BY ordinal_position;

-- source: grafana/grafana/pkg/tsdb/grafana-postgresql-datasource/schema.go (postgresSchema.ColumnValues, schema 'public', table 'otel_logs_and_spans', columns project_id and name)
-- expect: ok
SELECT 'project_id' AS col_name, "project_id"::text AS val FROM (SELECT DISTINCT "project_id" FROM "public"."otel_logs_and_spans" WHERE "project_id" IS NOT NULL ORDER BY "project_id" LIMIT 100) sub_0 UNION ALL SELECT 'name' AS col_name, "name"::text AS val FROM (SELECT DISTINCT "name" FROM "public"."otel_logs_and_spans" WHERE "name" IS NOT NULL ORDER BY "name" LIMIT 100) sub_1;
