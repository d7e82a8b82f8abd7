// Node `pg` (node-postgres) against TimeFusion: parameterized queries (extended protocol),
// typed results, errors with SQLSTATEs. Usage: node pg_client.js URL. Prints one JSON object
// the Rust test (tests/e2e/external/node_pg.rs) asserts on. `PG_MODULE` names another copy of
// `pg` to load (the newest release, which scripts/test-deps.sh installs under tests/node-latest).
const { Client } = require(process.env.PG_MODULE || "pg");

async function main() {
  const client = new Client({ connectionString: process.argv[2] });
  await client.connect();
  const out = {};
  const now = new Date();
  for (let i = 0; i < 20; i++) {
    await client.query(
      "INSERT INTO otel_logs_and_spans (project_id, timestamp, id, name, duration) VALUES ($1, $2, $3, $4, $5)",
      ["node", now, `node-${i}`, "GET /node", i * 10],
    );
  }
  const res = await client.query(
    "SELECT count(*)::INT AS n, sum(duration) AS total, max(timestamp) AS latest FROM otel_logs_and_spans WHERE project_id = $1",
    ["node"],
  );
  out.count = res.rows[0].n;
  out.total = String(res.rows[0].total);
  out.latest_ms = new Date(res.rows[0].latest).getTime();
  out.now_ms = now.getTime();
  out.fields = res.fields.map((f) => f.name);
  const version = await client.query("SELECT version() AS v");
  out.version = version.rows[0].v;
  out.driver = require(`${process.env.PG_MODULE || "pg"}/package.json`).version;
  try {
    await client.query("SELECT * FROM no_such_table");
  } catch (e) {
    out.unknown_table = e.code;
  }
  const again = await client.query("SELECT 1 AS one");
  out.still_works = again.rows[0].one;
  await client.end();
  console.log(JSON.stringify(out));
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
