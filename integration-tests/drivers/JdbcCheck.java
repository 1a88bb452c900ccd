// Runs a fixed scenario through pgjdbc (extended protocol, server-side prepared statements from
// the first use, binary transfer) and prints one JSON line with what it saw. Connection
// settings come from the PG* environment variables the other driver checks use.
import java.sql.*;

public class JdbcCheck {
    public static void main(String[] args) throws Exception {
        String url = "jdbc:postgresql://" + System.getenv("PGHOST") + ":" + System.getenv("PGPORT") + "/"
                + System.getenv("PGDATABASE") + "?sslmode=disable&prepareThreshold=1";
        String table = System.getenv().getOrDefault("TABLE", "driver_check");
        StringBuilder out = new StringBuilder("{");
        try (Connection c = DriverManager.getConnection(url, System.getenv("PGUSER"), System.getenv("PGPASSWORD"))) {
            try (PreparedStatement p = c.prepareStatement("INSERT INTO " + table + " (email, age, note) VALUES (?, ?, ?)")) {
                for (int i = 0; i < 5; i++) {
                    p.setString(1, "java" + i + "@example.com");
                    p.setInt(2, 40 + i);
                    p.setString(3, "from java");
                    p.executeUpdate();
                }
            }
            String email = null;
            int age = 0;
            try (PreparedStatement p = c.prepareStatement("SELECT email, age FROM " + table + " WHERE email = ?")) {
                for (int k = 0; k < 3; k++) {
                    p.setString(1, "java3@example.com");
                    try (ResultSet r = p.executeQuery()) {
                        r.next();
                        email = r.getString(1);
                        age = r.getInt(2);
                    }
                }
            }
            out.append("\"email\":\"").append(email).append("\",\"age\":").append(age);
            c.setAutoCommit(false);
            try (Statement s = c.createStatement()) {
                s.executeQuery("SELECT * FROM " + table + " WHERE email LIKE 'java%'");
                out.append(",\"like\":\"accepted\"");
            } catch (SQLException e) {
                out.append(",\"like\":\"").append(e.getSQLState()).append("\"");
            }
            c.rollback();
            c.setAutoCommit(true);
            try (PreparedStatement p = c.prepareStatement("SELECT count(*) FROM " + table + " WHERE age IN (?, ?)")) {
                p.setInt(1, 41);
                p.setInt(2, 42);
                try (ResultSet r = p.executeQuery()) {
                    r.next();
                    out.append(",\"in\":").append(r.getLong(1));
                }
            }
        }
        System.out.println(out.append("}"));
    }
}
