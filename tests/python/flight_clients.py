"""Flight clients for the end-to-end tests: pyarrow.flight DoPut and the ADBC Flight SQL driver.

Usage: flight_clients.py PORT TOKEN. Prints one JSON object with what each client saw; the Rust
test (tests/flight_python.rs) asserts on it.
"""
import datetime
import json
import os
import sys

import pyarrow as pa
import pyarrow.flight as flight

port, token = int(sys.argv[1]), sys.argv[2]
location = f"grpc://127.0.0.1:{port}"
auth = [(b"authorization", f"Bearer {token}".encode())]
out = {}

now = datetime.datetime.now(datetime.timezone.utc)
schema = pa.schema([
    ("project_id", pa.string()),
    ("timestamp", pa.timestamp("ms", tz="UTC")),  # another unit: cast by the server
    ("id", pa.string()),
    ("name", pa.string()),
])


def batch(b, rows=1000):
    return pa.record_batch([
        pa.array(["py"] * rows),
        pa.array([now] * rows, type=pa.timestamp("ms", tz="UTC")),
        pa.array([f"py-{b}-{i}" for i in range(rows)]),
        pa.array([f"span {i}" for i in range(rows)]),
    ], schema=schema)


client = flight.FlightClient(location)
descriptor = flight.FlightDescriptor.for_path("otel_logs_and_spans")

# DoPut of many batches, reading one PutResult per batch.
writer, reader = client.do_put(descriptor, schema, options=flight.FlightCallOptions(headers=auth))
acks = []
for b in range(25):
    writer.write_batch(batch(b))
    acks.append(reader.read().to_pybytes().decode())
writer.done_writing()
writer.close()
out["acks"] = acks

# Wrong token.
try:
    w, r = client.do_put(descriptor, schema, options=flight.FlightCallOptions(headers=[(b"authorization", b"Bearer wrong")]))
    w.write_batch(batch(99, 1))
    w.close()
    out["wrong_token"] = "accepted"
except flight.FlightUnauthenticatedError as e:
    out["wrong_token"] = "unauthenticated"

# Wrong schema: duration is Int64 in the table; a list cannot be cast to it.
bad_schema = pa.schema([("project_id", pa.string()), ("timestamp", pa.timestamp("us", tz="UTC")),
                        ("id", pa.string()), ("duration", pa.list_(pa.int64()))])
bad = pa.record_batch([pa.array(["py"]), pa.array([now], type=pa.timestamp("us", tz="UTC")),
                       pa.array(["bad"]), pa.array([[1, 2]], type=pa.list_(pa.int64()))], schema=bad_schema)
try:
    w, r = client.do_put(descriptor, bad_schema, options=flight.FlightCallOptions(headers=auth))
    w.write_batch(bad)
    w.done_writing()
    r.read()
    w.close()
    out["wrong_schema"] = "accepted"
except (flight.FlightError, pa.ArrowInvalid) as e:
    # pyarrow surfaces gRPC INVALID_ARGUMENT as ArrowInvalid.
    out["wrong_schema"] = type(e).__name__ + ": " + str(e)

# ADBC Flight SQL driver: queries get Arrow results.
import adbc_driver_flightsql.dbapi as adbc
from adbc_driver_flightsql import DatabaseOptions

with adbc.connect(location, db_kwargs={DatabaseOptions.AUTHORIZATION_HEADER.value: f"Bearer {token}"}) as conn:
    with conn.cursor() as cur:
        cur.execute("SELECT count(*) AS n FROM otel_logs_and_spans WHERE project_id = 'py'")
        out["adbc_count"] = cur.fetchone()[0]
        cur.execute("SELECT id, name FROM otel_logs_and_spans WHERE id = 'py-3-7'")
        table = cur.fetch_arrow_table()
        out["adbc_row"] = table.to_pylist()

print(json.dumps(out), flush=True)
# Skip interpreter teardown, where native thread pools occasionally abort the process.
os._exit(0)
