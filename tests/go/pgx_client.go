// pgx (the Go driver; Debian's golang-github-jackc-pgx-v4-dev) against TimeFusion: its
// extended protocol with binary parameters and results throughout, a batch of INSERTs sent
// in one round trip (SendBatch), binary COPY (CopyFrom), arrays as parameters (= ANY($1) of
// text and of int8), a prepared statement, and a SQLSTATE.
//
// Usage: pgx_client DSN. Prints one JSON object with what the client saw; the Rust test
// (tests/e2e/external/pgx.rs) asserts on it.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/jackc/pgconn"
	"github.com/jackc/pgx/v4"
)

func must(err error, what string) {
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", what, err)
		os.Exit(1)
	}
}

func main() {
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, os.Args[1])
	must(err, "connect")
	defer conn.Close(ctx)
	out := map[string]interface{}{}
	start := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)

	batch := &pgx.Batch{}
	for i := 0; i < 20; i++ {
		batch.Queue(
			"INSERT INTO otel_logs_and_spans (project_id, timestamp, id, name, duration, hashes) VALUES ($1, $2, $3, $4, $5, $6)",
			"pgx", start.Add(time.Duration(i)*time.Second), fmt.Sprintf("pgx-%d", i), "GET /a", int64(i), []string{fmt.Sprintf("h%d", i), "x"},
		)
	}
	results := conn.SendBatch(ctx, batch)
	for i := 0; i < 20; i++ {
		_, err := results.Exec()
		must(err, "batch insert")
	}
	must(results.Close(), "batch close")

	rows := make([][]interface{}, 30)
	for i := range rows {
		rows[i] = []interface{}{"pgx", start, fmt.Sprintf("pgx-copy-%d", i), "copied"}
	}
	copied, err := conn.CopyFrom(ctx, pgx.Identifier{"otel_logs_and_spans"},
		[]string{"project_id", "timestamp", "id", "name"}, pgx.CopyFromRows(rows))
	must(err, "copy from")
	out["copied"] = copied

	var count int64
	must(conn.QueryRow(ctx, "SELECT count(*) FROM otel_logs_and_spans WHERE project_id = $1", "pgx").Scan(&count), "count")
	out["count"] = count

	var id string
	var hashes []string
	var ts time.Time
	var duration int64
	must(conn.QueryRow(ctx,
		"SELECT id, hashes, timestamp, duration FROM otel_logs_and_spans WHERE project_id = $1 AND id = $2",
		"pgx", "pgx-3").Scan(&id, &hashes, &ts, &duration), "row")
	out["row"] = []interface{}{id, hashes, ts.UTC().Format(time.RFC3339), duration}

	must(conn.QueryRow(ctx,
		"SELECT count(*) FROM otel_logs_and_spans WHERE project_id = $1 AND id = ANY($2)",
		"pgx", []string{"pgx-1", "pgx-2", "nope"}).Scan(&count), "any text")
	out["any_text"] = count
	must(conn.QueryRow(ctx,
		"SELECT count(*) FROM otel_logs_and_spans WHERE project_id = $1 AND duration = ANY($2)",
		"pgx", []int64{3, 4, 99}).Scan(&count), "any int8")
	out["any_int"] = count

	_, err = conn.Prepare(ctx, "at_least", "SELECT count(*) FROM otel_logs_and_spans WHERE project_id = $1 AND duration >= $2")
	must(err, "prepare")
	var ten, fifteen int64
	must(conn.QueryRow(ctx, "at_least", "pgx", 10).Scan(&ten), "prepared 10")
	must(conn.QueryRow(ctx, "at_least", "pgx", 15).Scan(&fifteen), "prepared 15")
	out["prepared"] = []int64{ten, fifteen}

	_, err = conn.Exec(ctx, "SELECT * FROM no_such_table")
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		out["missing_table"] = pgErr.Code
	}

	encoded, err := json.Marshal(out)
	must(err, "json")
	fmt.Println(string(encoded))
}
