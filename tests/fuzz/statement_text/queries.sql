SELECT 'a;b', "c;d" -- e;f
 FROM t; /* g; /* h; */ */ SELECT $$h;$$, $fn$ x $fn$, E'\';' ; RESET TIME ZONE;
SELECT count(*) FROM otel_logs_and_spans WHERE project_id IN ('a','b') AND (level = 'ERROR' OR duration > 1+2*3) AND name LIKE '%x%';
