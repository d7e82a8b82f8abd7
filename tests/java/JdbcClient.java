// pgjdbc (the driver of DBeaver, Metabase and every JVM tool) against TimeFusion: prepared
// statements, DatabaseMetaData.getTables / getColumns as schema browsers call them, SQLSTATEs.
// Usage: java -cp postgresql.jar:. JdbcClient URL USER PASSWORD. Prints key=value lines the
// Rust test (tests/jdbc.rs) asserts on.
import java.sql.*;

public class JdbcClient {
    public static void main(String[] args) throws Exception {
        try (Connection conn = DriverManager.getConnection(args[0], args[1], args[2])) {
            DatabaseMetaData meta = conn.getMetaData();
            System.out.println("product=" + meta.getDatabaseProductName());
            System.out.println("version=" + meta.getDatabaseProductVersion());
            try (PreparedStatement insert = conn.prepareStatement(
                    "INSERT INTO otel_logs_and_spans (project_id, timestamp, id, name, duration) VALUES (?, ?, ?, ?, ?)")) {
                Timestamp now = new Timestamp(System.currentTimeMillis());
                for (int i = 0; i < 10; i++) {
                    insert.setString(1, "jdbc");
                    insert.setTimestamp(2, now);
                    insert.setString(3, "jdbc-" + i);
                    insert.setString(4, "GET /jdbc");
                    insert.setLong(5, i * 100L);
                    insert.executeUpdate();
                }
            }
            try (PreparedStatement query = conn.prepareStatement(
                    "SELECT count(*), sum(duration) FROM otel_logs_and_spans WHERE project_id = ?")) {
                query.setString(1, "jdbc");
                try (ResultSet rs = query.executeQuery()) {
                    rs.next();
                    System.out.println("count=" + rs.getLong(1));
                    System.out.println("sum=" + rs.getLong(2));
                }
            }
            int tables = 0;
            try (ResultSet rs = meta.getTables(null, "public", "%", new String[] {"TABLE"})) {
                while (rs.next()) {
                    if (rs.getString("TABLE_NAME").equals("otel_logs_and_spans")) tables++;
                }
            }
            System.out.println("tables=" + tables);
            int columns = 0;
            String firstTwo = "";
            try (ResultSet rs = meta.getColumns(null, "public", "otel_logs_and_spans", "%")) {
                while (rs.next()) {
                    if (columns < 2) firstTwo += rs.getString("COLUMN_NAME") + ";";
                    columns++;
                }
            }
            System.out.println("columns=" + columns);
            System.out.println("first_columns=" + firstTwo);
            try (Statement st = conn.createStatement()) {
                st.executeQuery("SELECT * FROM no_such_table");
            } catch (SQLException e) {
                System.out.println("unknown_table=" + e.getSQLState());
            }
        }
    }
}
