/*
 * Write shapes, the pgjdbc side: what a Java application's PostgreSQL driver sends, against the
 * same servers as bench/write_shapes.py (psycopg), into the same results file.
 *
 *   java -cp /usr/share/java/postgresql.jar bench/WriteShapesJdbc.java \
 *       --target postgresql=jdbc:postgresql://127.0.0.1:PORT/postgres?user=postgres&password=postgres \
 *       --target timefusion=jdbc:postgresql://127.0.0.1:PORT/postgres?user=postgres&password=postgres \
 *       --results FILE.jsonl [--rows 2000] [--batch 500] [--shapes jdbc_batch_arrays,jdbc_batch_autocommit]
 *       [--timestamps object|timestamp] [--warmup 10000] [--shape-timeout 900]
 *   python bench/write_shapes.py --report FILE.jsonl     # these shapes beside psycopg's
 *
 * Java 17, single-file source launch, no build step; only pgjdbc on the class path.
 *
 * Shapes (rows/s over the whole shape, from the first statement to the last acknowledgement,
 * commit included):
 *
 * - jdbc_batch_arrays: one connection, autoCommit=false, one PreparedStatement of a one-row
 *   INSERT with all 16 columns: setString, setObject(OffsetDateTime) (or setTimestamp with
 *   --timestamps timestamp), setLong, setInt, setArray(conn.createArrayOf("text", ...)) for the
 *   text[] `hashes`, setString for the JSON text; addBatch() per row, executeBatch() every
 *   --batch rows, commit() at the end.
 * - jdbc_batch_autocommit: the same with autoCommit=true (no commit() call).
 *
 * Before its shapes every target gets an untimed warm-up: --warmup rows (default 10000; 0 for
 * none) sent as jdbc_batch_arrays does, committed, with project ids `bench-jdbc-warmup-<run>-<k>`
 * (on PostgreSQL the TRUNCATE before the first shape removes them). Without it the first target
 * runs pgjdbc's code interpreted, before the JIT has compiled it, and gets half the rows/s.
 *
 * Rows are generated once, before any target runs, from java.util.Random(42), in the spirit of
 * write_shapes.py's gen_rows (8 tenants, timestamps in the 10 minutes before the run, uuid-like
 * ids, small vocabularies, 1-3 hashes, JSON body and attributes of ~150-300 bytes), so every
 * target gets the same rows. Each shape's rows carry their own project ids,
 * `bench-<shape with - for _>-<run>-<k>`, and after the shape
 * `SELECT count(*) ... WHERE project_id LIKE 'bench-<shape>-<run>-%'` must equal the rows sent
 * (on PostgreSQL the whole table's count too). A target whose name starts with `postgres` gets
 * the table created if it does not exist (the columns and index of write_shapes.py's) and
 * TRUNCATEd before every shape; any other target (TimeFusion) is never created or truncated.
 *
 * One JSON line per (target, shape) is appended to --results, with write_shapes.py's keys. A
 * failed shape keeps its error text and the rest still run; the exit status is 1 if any shape
 * failed or did not verify.
 */

import java.io.FileWriter;
import java.io.IOException;
import java.io.Writer;
import java.nio.charset.StandardCharsets;
import java.sql.Array;
import java.sql.BatchUpdateException;
import java.sql.Connection;
import java.sql.DriverManager;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.sql.Statement;
import java.sql.Timestamp;
import java.time.OffsetDateTime;
import java.time.ZoneOffset;
import java.time.format.DateTimeFormatter;
import java.time.temporal.ChronoUnit;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Properties;
import java.util.Random;
import java.util.UUID;
import java.util.concurrent.Executors;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.ScheduledFuture;
import java.util.concurrent.TimeUnit;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

public class WriteShapesJdbc {
    static final String TABLE = "otel_logs_and_spans";
    static final String[] COLUMNS = {
        "project_id", "timestamp", "id", "name", "kind", "status_code", "level",
        "severity___severity_text", "duration", "context___trace_id", "context___span_id",
        "hashes", "body", "attributes", "resource___service___name",
        "attributes___http___response___status_code",
    };
    // write_shapes.py's PG_DDL, without its DROP: the table is kept if it is there.
    static final String PG_TABLE = "CREATE TABLE IF NOT EXISTS " + TABLE + " (\n"
        + "    project_id text NOT NULL,\n"
        + "    timestamp timestamptz NOT NULL,\n"
        + "    id text NOT NULL,\n"
        + "    name text,\n"
        + "    kind text,\n"
        + "    status_code text,\n"
        + "    level text,\n"
        + "    severity___severity_text text,\n"
        + "    duration bigint,\n"
        + "    context___trace_id text,\n"
        + "    context___span_id text,\n"
        + "    hashes text[],\n"
        + "    body text,\n"
        + "    attributes text,\n"
        + "    resource___service___name text,\n"
        + "    attributes___http___response___status_code int\n"
        + ")";
    // The name PostgreSQL gives write_shapes.py's `CREATE INDEX ON t (project_id, timestamp)`.
    static final String PG_INDEX = "CREATE INDEX IF NOT EXISTS " + TABLE + "_project_id_timestamp_idx ON "
        + TABLE + " (project_id, timestamp)";
    static final List<String> ALL_SHAPES = List.of("jdbc_batch_arrays", "jdbc_batch_autocommit");

    static final String[] METHODS = {"GET", "GET", "GET", "POST", "PUT", "DELETE", "PATCH"};
    static final String[] RESOURCES = {
        "users", "orders", "items", "carts", "payments", "invoices", "sessions", "search",
        "products", "reviews", "auth/login", "auth/refresh", "notifications", "settings",
    };
    static final String[] ENDPOINTS = new String[50];
    static {
        for (int i = 0; i < ENDPOINTS.length; i++) {
            ENDPOINTS[i] = METHODS[i % METHODS.length] + " /api/v" + (1 + i % 2) + "/"
                + RESOURCES[i % RESOURCES.length] + (i % 3 == 0 ? "/{id}" : "");
        }
    }
    static final String[] SERVICES = {"api-gateway", "checkout", "inventory", "auth", "billing", "search",
        "notifier", "frontend", "worker", "scheduler", "catalog", "recommendations"};
    static final String[] KINDS = {"SERVER", "CLIENT", "INTERNAL", "PRODUCER", "CONSUMER"};
    static final String[] STATUS = {"OK", "OK", "OK", "OK", "UNSET"};
    static final String[][] LEVELS = {{"INFO", "INFO"}, {"INFO", "INFO"}, {"DEBUG", "DEBUG"},
        {"WARN", "WARNING"}, {"ERROR", "ERROR"}};
    static final int[] HTTP_CODES = {200, 200, 200, 200, 201, 204, 301, 400, 401, 403, 404, 409, 429, 500, 502, 503};
    static final String[] HASH_WORDS = {"err", "slow", "auth", "db", "cache", "retry", "n+1", "4xx", "5xx", "ext", "q", "io"};
    static final String[] HOSTS = {"10.0.1.12", "10.0.1.47", "10.0.2.3", "10.0.3.91", "172.16.0.5"};
    static final String[] AGENTS = {"Mozilla/5.0 (X11; Linux x86_64)", "okhttp/4.12.0", "python-requests/2.32.3",
        "Go-http-client/1.1", "curl/8.5.0"};
    static final String[] TIERS = {"free", "pro", "team"};

    record Row(String projectId, OffsetDateTime timestamp, String id, String name, String kind, String statusCode,
               String level, String severity, long duration, String traceId, String spanId, String[] hashes,
               String body, String attributes, String service, int httpCode) {}

    static String shapeTag(String shape) {
        return shape.replace('_', '-');
    }

    static <T> T pick(Random rng, T[] xs) {
        return xs[rng.nextInt(xs.length)];
    }

    /** `n` rows of telemetry for `shape`, the 16 columns of COLUMNS. */
    static List<Row> genRows(Random rng, int n, String shape, String run, OffsetDateTime now) {
        String tag = shapeTag(shape);
        List<Row> rows = new ArrayList<>(n);
        for (int r = 0; r < n; r++) {
            // A few big tenants, a long tail (write_shapes.py: min(int(expovariate(0.6)), 7)).
            int k = (int) Math.min(-Math.log(1.0 - rng.nextDouble()) / 0.6, 7);
            String endpoint = pick(rng, ENDPOINTS);
            int sp = endpoint.indexOf(' ');
            String method = endpoint.substring(0, sp), path = endpoint.substring(sp + 1);
            String service = pick(rng, SERVICES);
            String[] level = pick(rng, LEVELS);
            int code = HTTP_CODES[rng.nextInt(HTTP_CODES.length)];
            String status = code >= 500 ? "ERROR" : pick(rng, STATUS);
            long duration = (long) Math.pow(10, 4 + 6 * rng.nextDouble()); // 10 µs to 10 s, in ns
            OffsetDateTime ts = now.minus(rng.nextInt(600_000_000), ChronoUnit.MICROS);
            String traceId = String.format("%016x%016x", rng.nextLong(), rng.nextLong());
            String spanId = String.format("%016x", rng.nextLong());
            List<String> words = new ArrayList<>(Arrays.asList(HASH_WORDS));
            int nh = 1 + rng.nextInt(3);
            String[] hashes = new String[nh];
            for (int h = 0; h < nh; h++) {
                hashes[h] = words.remove(rng.nextInt(words.size()));
            }
            int item = rng.nextInt(100_000);
            Map<String, Object> body = new LinkedHashMap<>();
            body.put("message", method + " " + path.replace("{id}", Integer.toString(item)) + " -> " + code);
            body.put("request", map("method", method, "path", path, "bytes", 50 + rng.nextInt(20000 - 50)));
            body.put("response", map("status", code, "bytes", 50 + rng.nextInt(200000 - 50)));
            body.put("user", map("id", "u-" + rng.nextInt(10000), "tier", pick(rng, TIERS)));
            Map<String, Object> attributes = map(
                "http.request.method", method,
                "http.route", path,
                "http.response.status_code", code,
                "server.address", pick(rng, HOSTS),
                "user_agent.original", pick(rng, AGENTS),
                "db.statement.count", rng.nextInt(12));
            // A version 4 UUID from the rng's bits, as write_shapes.py's uuid.UUID(int=..., version=4).
            long msb = (rng.nextLong() & ~0xF000L) | 0x4000L;
            long lsb = (rng.nextLong() & 0x3FFFFFFFFFFFFFFFL) | 0x8000000000000000L;
            rows.add(new Row("bench-" + tag + "-" + run + "-" + k, ts, new UUID(msb, lsb).toString(), endpoint,
                pick(rng, KINDS), status, level[0], level[1], duration, traceId, spanId, hashes,
                json(body), json(attributes), service, code));
        }
        return rows;
    }

    static Map<String, Object> map(Object... kv) {
        Map<String, Object> m = new LinkedHashMap<>();
        for (int i = 0; i < kv.length; i += 2) {
            m.put((String) kv[i], kv[i + 1]);
        }
        return m;
    }

    /** `v` as JSON, with Python json.dumps's default separators (", " and ": "). */
    static String json(Object v) {
        StringBuilder sb = new StringBuilder();
        json(sb, v);
        return sb.toString();
    }

    static void json(StringBuilder sb, Object v) {
        if (v == null) {
            sb.append("null");
        } else if (v instanceof String s) {
            sb.append('"');
            for (int i = 0; i < s.length(); i++) {
                char c = s.charAt(i);
                switch (c) {
                    case '"' -> sb.append("\\\"");
                    case '\\' -> sb.append("\\\\");
                    case '\n' -> sb.append("\\n");
                    case '\r' -> sb.append("\\r");
                    case '\t' -> sb.append("\\t");
                    default -> {
                        if (c < 0x20) {
                            sb.append(String.format("\\u%04x", (int) c));
                        } else {
                            sb.append(c);
                        }
                    }
                }
            }
            sb.append('"');
        } else if (v instanceof Double d) {
            sb.append(d.isNaN() || d.isInfinite() ? "null" : d.toString());
        } else if (v instanceof Number || v instanceof Boolean) {
            sb.append(v);
        } else if (v instanceof Map<?, ?> m) {
            sb.append('{');
            boolean first = true;
            for (Map.Entry<?, ?> e : m.entrySet()) {
                if (!first) sb.append(", ");
                first = false;
                json(sb, e.getKey().toString());
                sb.append(": ");
                json(sb, e.getValue());
            }
            sb.append('}');
        } else if (v instanceof List<?> l) {
            sb.append('[');
            for (int i = 0; i < l.size(); i++) {
                if (i > 0) sb.append(", ");
                json(sb, l.get(i));
            }
            sb.append(']');
        } else {
            json(sb, v.toString());
        }
    }

    static String insertSql() {
        return "INSERT INTO " + TABLE + " (" + String.join(", ", COLUMNS) + ") VALUES ("
            + String.join(", ", java.util.Collections.nCopies(COLUMNS.length, "?")) + ")";
    }

    static boolean isPostgres(String name) {
        return name.toLowerCase(Locale.ROOT).startsWith("postgres");
    }

    static Connection connect(String url) throws SQLException {
        Properties props = new Properties();
        props.setProperty("connectTimeout", "30");
        props.setProperty("ApplicationName", "write_shapes_jdbc");
        return DriverManager.getConnection(url, props);
    }

    /**
     * Cuts the shape's connection if it runs longer than `seconds`: a cancel request first
     * (PGConnection.cancelQuery: Statement.cancel does nothing while pgjdbc is still in the
     * Parse / Describe it sends before a batch), then, 10 s later, Connection.abort (the socket
     * closed), so a server that ignores cancel cannot hang the run.
     */
    static final class Watchdog implements AutoCloseable {
        final ScheduledExecutorService timer = Executors.newSingleThreadScheduledExecutor(r -> {
            Thread t = new Thread(r, "watchdog");
            t.setDaemon(true);
            return t;
        });
        final ScheduledFuture<?> task;
        volatile Connection conn;
        volatile boolean fired;

        Watchdog(double seconds) {
            task = timer.schedule(this::fire, (long) (seconds * 1000), TimeUnit.MILLISECONDS);
        }

        void fire() {
            fired = true;
            try {
                Connection c = conn;
                if (c != null) c.unwrap(org.postgresql.PGConnection.class).cancelQuery();
            } catch (Exception ignored) {
                // the abort below still cuts it
            }
            try {
                Thread.sleep(10_000);
                Connection c = conn;
                if (c != null && !c.isClosed()) c.abort(Runnable::run);
            } catch (Exception ignored) {
                // nothing more to do
            }
        }

        @Override
        public void close() {
            task.cancel(false);
            timer.shutdownNow();
        }
    }

    static void bind(Connection conn, PreparedStatement ps, Row r, boolean objectTimestamps) throws SQLException {
        int i = 1;
        ps.setString(i++, r.projectId());
        if (objectTimestamps) {
            ps.setObject(i++, r.timestamp());
        } else {
            ps.setTimestamp(i++, Timestamp.from(r.timestamp().toInstant()));
        }
        ps.setString(i++, r.id());
        ps.setString(i++, r.name());
        ps.setString(i++, r.kind());
        ps.setString(i++, r.statusCode());
        ps.setString(i++, r.level());
        ps.setString(i++, r.severity());
        ps.setLong(i++, r.duration());
        ps.setString(i++, r.traceId());
        ps.setString(i++, r.spanId());
        Array hashes = conn.createArrayOf("text", r.hashes());
        ps.setArray(i++, hashes);
        ps.setString(i++, r.body());
        ps.setString(i++, r.attributes());
        ps.setString(i++, r.service());
        ps.setInt(i++, r.httpCode());
    }

    static Map<String, Object> shapeBatch(String url, List<Row> rows, int batch, boolean autocommit,
                                          boolean objectTimestamps, Watchdog dog) throws SQLException {
        try (Connection conn = connect(url)) {
            dog.conn = conn;
            conn.setAutoCommit(autocommit);
            int batches = 0;
            long start = System.nanoTime();
            try (PreparedStatement ps = conn.prepareStatement(insertSql())) {
                int pending = 0, sent = 0;
                for (Row r : rows) {
                    bind(conn, ps, r, objectTimestamps);
                    ps.addBatch();
                    if (++pending == batch) {
                        executeBatch(ps, ++batches, sent, pending);
                        sent += pending;
                        pending = 0;
                    }
                }
                if (pending > 0) {
                    executeBatch(ps, ++batches, sent, pending);
                }
            }
            if (!autocommit) {
                conn.commit();
            }
            double seconds = (System.nanoTime() - start) / 1e9;
            Map<String, Object> r = new LinkedHashMap<>();
            r.put("seconds", seconds);
            r.put("connections", 1);
            r.put("statements", rows.size());
            r.put("batches", batches);
            return r;
        }
    }

    static long count(String url, String where) throws SQLException {
        String sql = "SELECT count(*) FROM " + TABLE + (where == null ? "" : " WHERE " + where);
        try (Connection conn = connect(url); Statement st = conn.createStatement(); ResultSet rs = st.executeQuery(sql)) {
            rs.next();
            return rs.getLong(1);
        }
    }

    /** A failed executeBatch: which one, which rows, and the server's error. */
    static final class BatchFailure extends SQLException {
        private static final long serialVersionUID = 1L;

        BatchFailure(String message, SQLException cause) {
            super(message, cause.getSQLState(), cause);
        }
    }

    static void executeBatch(PreparedStatement ps, int number, int firstRow, int rows) throws SQLException {
        try {
            ps.executeBatch();
        } catch (BatchUpdateException e) {
            throw new BatchFailure("executeBatch " + number + " (rows " + firstRow + ".." + (firstRow + rows - 1)
                + "): " + errorText(e), e);
        }
    }

    static final Pattern BATCH_ENTRY = Pattern.compile("^Batch entry (\\d+) ");

    /** The exception as write_shapes.py writes it, `Type: message`. For a failed batch the
     * server's error (pgjdbc's getNextException) rather than pgjdbc's message, which quotes the
     * whole statement with its parameters. */
    static String errorText(Throwable e) {
        if (e instanceof BatchFailure) {
            return e.getMessage();
        }
        String msg = e.getMessage() == null ? "" : e.getMessage();
        if (e instanceof BatchUpdateException be) {
            Matcher m = BATCH_ENTRY.matcher(msg);
            String where = m.find() ? " at batch entry " + m.group(1) : "";
            SQLException next = be.getNextException();
            if (next != null) {
                return "BatchUpdateException" + where + ": " + errorText(next);
            }
            return ("BatchUpdateException" + where + ": " + msg.replaceFirst("(?s)^Batch entry \\d+ .* was aborted: ", "")).strip();
        }
        if (e instanceof SQLException se) {
            for (SQLException n = se.getNextException(); n != null; n = n.getNextException()) {
                String nm = n.getMessage();
                if (nm != null && !msg.contains(nm)) {
                    msg += " | " + nm;
                }
            }
        }
        Throwable cause = e.getCause();
        if (cause != null && cause != e && !msg.contains(String.valueOf(cause.getMessage()))) {
            msg += " (cause: " + cause.getClass().getSimpleName() + ": " + cause.getMessage() + ")";
        }
        return (e.getClass().getSimpleName() + ": " + msg).strip();
    }

    static String fmt(Object v, String spec, int width) {
        if (v == null) {
            return String.format("%" + width + "s", "-");
        }
        return String.format(Locale.ROOT, spec, v);
    }

    static final String HEADER = String.format("%-12s %-24s %7s %5s %8s %10s %8s %8s  check",
        "target", "shape", "rows", "conns", "seconds", "rows/s", "p50 ms", "p99 ms");

    static String line(Map<String, Object> rec) {
        String check;
        if (rec.get("error") != null) {
            String first = rec.get("error").toString().split("\n", 2)[0];
            check = "ERROR: " + first.substring(0, Math.min(160, first.length()));
        } else if (Boolean.TRUE.equals(rec.get("verified"))) {
            check = "ok";
        } else {
            check = "VERIFY FAILED (counted " + rec.get("counted") + ")";
        }
        return String.format(Locale.ROOT, "%-12s %-24s %7d %s %s %s %s %s  %s", rec.get("target"), rec.get("shape"),
            (Integer) rec.get("rows"), fmt(rec.get("connections"), "%5d", 5), fmt(rec.get("seconds"), "%8.2f", 8),
            fmt(rec.get("rows_per_s"), "%,10.0f", 10), fmt(rec.get("p50_ms"), "%8.2f", 8),
            fmt(rec.get("p99_ms"), "%8.2f", 8), check);
    }

    static void append(String path, Map<String, Object> rec) throws IOException {
        try (Writer w = new FileWriter(path, StandardCharsets.UTF_8, true)) {
            w.write(json(rec) + "\n");
        }
    }

    static String nowIso() {
        return OffsetDateTime.now(ZoneOffset.UTC).format(DateTimeFormatter.ISO_OFFSET_DATE_TIME);
    }

    static void usage(String why) {
        System.err.println("WriteShapesJdbc: " + why);
        System.err.println("usage: java -cp /usr/share/java/postgresql.jar bench/WriteShapesJdbc.java "
            + "--target NAME=JDBC_URL [--target ...] --results FILE.jsonl [--rows 2000] [--batch 500] "
            + "[--shapes " + String.join(",", ALL_SHAPES) + "] [--timestamps object|timestamp] [--warmup 10000] [--shape-timeout 900]");
        System.exit(2);
    }

    public static void main(String[] argv) throws Exception {
        List<String[]> targets = new ArrayList<>();
        String results = null;
        int rowsPerShape = 2000, batch = 500, warmup = 10000;
        double shapeTimeout = 900;
        boolean objectTimestamps = true;
        List<String> shapes = new ArrayList<>(ALL_SHAPES);
        for (int i = 0; i < argv.length; i++) {
            String a = argv[i];
            String v = null;
            int eq = a.indexOf('=');
            if (a.startsWith("--") && eq > 0) { // --opt=value
                v = a.substring(eq + 1);
                a = a.substring(0, eq);
            } else if (a.startsWith("--") && !a.equals("--help") && !a.equals("-h")) {
                if (i + 1 >= argv.length) usage(a + " wants a value");
                v = argv[++i];
            }
            try {
                switch (a) {
                    case "--target" -> {
                        int sep = v.indexOf('=');
                        if (sep <= 0) usage("--target wants NAME=JDBC_URL, got " + v);
                        targets.add(new String[] {v.substring(0, sep), v.substring(sep + 1)});
                    }
                    case "--results" -> results = v;
                    case "--rows" -> rowsPerShape = Integer.parseInt(v);
                    case "--batch" -> batch = Integer.parseInt(v);
                    case "--warmup" -> warmup = Integer.parseInt(v);
                    case "--shape-timeout" -> shapeTimeout = Double.parseDouble(v);
                    case "--timestamps" -> {
                        if (!v.equals("object") && !v.equals("timestamp")) usage("--timestamps is object or timestamp");
                        objectTimestamps = v.equals("object");
                    }
                    case "--shapes" -> {
                        shapes = new ArrayList<>();
                        for (String s : v.split("[, ]+")) {
                            if (s.isEmpty()) continue;
                            if (!ALL_SHAPES.contains(s)) usage("unknown shape " + s + "; shapes: " + String.join(", ", ALL_SHAPES));
                            shapes.add(s);
                        }
                    }
                    case "--help", "-h" -> usage("help");
                    default -> usage("unknown argument " + a);
                }
            } catch (NumberFormatException e) {
                usage(a + " wants a number, got " + v);
            }
        }
        if (targets.isEmpty() || results == null) usage("--target NAME=JDBC_URL (one or more) and --results FILE.jsonl are needed");
        if (rowsPerShape < 1 || batch < 1 || warmup < 0) usage("--rows and --batch must be at least 1, --warmup at least 0");

        OffsetDateTime now = OffsetDateTime.now(ZoneOffset.UTC).truncatedTo(ChronoUnit.MICROS);
        String run = now.format(DateTimeFormatter.ofPattern("yyyyMMddHHmmss"));
        Random rng = new Random(42);
        Map<String, List<Row>> data = new LinkedHashMap<>();
        for (String s : shapes) { // every target gets the same rows
            data.put(s, genRows(rng, rowsPerShape, s, run, now));
        }
        // Rows for the untimed warm-up, from their own seed so the shapes' rows do not depend on --warmup.
        List<Row> warmRows = genRows(new Random(7), warmup, "jdbc_warmup", run, now);
        String driver = "pgjdbc " + org.postgresql.util.DriverInfo.DRIVER_VERSION;
        String binding = objectTimestamps ? "setObject(OffsetDateTime)" : "setTimestamp";
        System.out.println("java " + System.getProperty("java.version") + ", " + driver + "; run " + run
            + "; --batch " + batch + ", timestamps by " + binding + ", warm-up " + warmup + " rows per target; shapes: "
            + String.join(", ", shapes));

        int failed = 0;
        for (String[] t : targets) {
            String name = t[0], url = t[1];
            System.out.println("\n== " + name + " (jdbc)");
            String serverVersion;
            try (Connection conn = connect(url); Statement st = conn.createStatement()) {
                try (ResultSet rs = st.executeQuery("SHOW server_version")) {
                    rs.next();
                    serverVersion = rs.getString(1);
                }
                if (isPostgres(name)) {
                    st.execute(PG_TABLE);
                    st.execute(PG_INDEX);
                }
            } catch (Exception e) {
                System.err.println("ERROR: " + name + ": cannot set up: " + errorText(e));
                for (String s : shapes) {
                    Map<String, Object> rec = new LinkedHashMap<>();
                    rec.put("target", name);
                    rec.put("shape", s);
                    rec.put("rows", data.get(s).size());
                    rec.put("verified", false);
                    rec.put("error", "setup: " + errorText(e));
                    append(results, rec);
                }
                failed += shapes.size();
                continue;
            }
            System.out.println("server_version " + serverVersion);
            if (!warmRows.isEmpty()) {
                // The JVM's first passes through pgjdbc run interpreted: every target first gets
                // --warmup untimed rows the way jdbc_batch_arrays sends them, so that no target,
                // the first one in particular, pays for the JIT's warm-up in its figures.
                try (Watchdog dog = new Watchdog(shapeTimeout)) {
                    shapeBatch(url, warmRows, batch, false, objectTimestamps, dog);
                } catch (Exception e) {
                    System.err.println("warning: " + name + ": warm-up failed (the shapes still run): " + errorText(e));
                }
            }
            System.out.println(HEADER);
            for (String s : shapes) {
                List<Row> rows = data.get(s);
                String tag = "bench-" + shapeTag(s) + "-" + run + "-";
                Map<String, Object> rec = new LinkedHashMap<>();
                rec.put("target", name);
                rec.put("shape", s);
                rec.put("rows", rows.size());
                rec.put("server_version", serverVersion);
                rec.put("run", run);
                rec.put("time", nowIso());
                rec.put("verified", false);
                rec.put("error", null);
                rec.put("driver", driver);
                rec.put("batch", batch);
                rec.put("timestamps", binding);
                rec.put("warmup_rows", warmup);
                try {
                    if (isPostgres(name)) {
                        try (Connection conn = connect(url); Statement st = conn.createStatement()) {
                            st.execute("TRUNCATE " + TABLE);
                        }
                    }
                    Map<String, Object> r;
                    try (Watchdog dog = new Watchdog(shapeTimeout)) {
                        try {
                            r = shapeBatch(url, rows, batch, s.equals("jdbc_batch_autocommit"), objectTimestamps, dog);
                        } catch (Exception e) {
                            if (dog.fired) {
                                throw new java.util.concurrent.TimeoutException(
                                    "shape ran over --shape-timeout " + shapeTimeout + " s (" + errorText(e) + ")");
                            }
                            throw e;
                        }
                    }
                    rec.putAll(r);
                    rec.put("rows_per_s", rows.size() / (Double) r.get("seconds"));
                    long counted = count(url, "project_id LIKE '" + tag + "%'");
                    rec.put("counted", counted);
                    boolean ok = counted == rows.size();
                    if (isPostgres(name)) {
                        long total = count(url, null);
                        rec.put("table_count", total);
                        ok = ok && total == rows.size();
                    }
                    rec.put("verified", ok);
                    if (!ok) {
                        failed++;
                        System.err.println("!!!!! VERIFY FAILED: " + name + " " + s + ": sent " + rows.size()
                            + " rows, counted " + counted + " with project_id LIKE '" + tag + "%'"
                            + (rec.containsKey("table_count") ? ", table holds " + rec.get("table_count") : ""));
                    }
                } catch (Exception e) {
                    failed++;
                    rec.put("error", errorText(e));
                    System.err.println("!!!!! ERROR: " + name + " " + s + ": " + rec.get("error"));
                }
                append(results, rec);
                System.out.println(line(rec));
                System.out.flush();
            }
        }
        if (failed > 0) {
            System.err.println("\n" + failed + " (target, shape) runs failed or did not verify");
        }
        System.exit(failed > 0 ? 1 : 0);
    }
}
