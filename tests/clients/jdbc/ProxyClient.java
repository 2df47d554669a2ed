// pgjdbc as a client of the pldiffix proxy (tests/integration/test_proxy_clients.py).
// Usage: java -cp postgresql.jar ProxyClient.java URL USER REPEAT SQL [SQL ...]
// A SQL starting with "?city=" is run as a PreparedStatement with that string as its one
// parameter. Each statement runs REPEAT times (pgjdbc switches to named server-side statements
// and binary results after prepareThreshold executions); the last run's rows are printed as one
// JSON array per statement: {"columns": [...], "rows": [[getString() or null, ...]]} or
// {"error": {"code": SQLSTATE, "message": ...}}.
import java.sql.Connection;
import java.sql.DriverManager;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.ResultSetMetaData;
import java.sql.SQLException;
import java.util.Properties;

public class ProxyClient {
    static String quote(String s) {
        if (s == null) return "null";
        StringBuilder out = new StringBuilder("\"");
        for (char c : s.toCharArray()) {
            if (c == '"' || c == '\\') out.append('\\').append(c);
            else if (c < 0x20) out.append(String.format("\\u%04x", (int) c));
            else out.append(c);
        }
        return out.append('"').toString();
    }

    static String run(Connection conn, String sql, int repeat) {
        String parameter = null;
        if (sql.startsWith("?city=")) {
            int end = sql.indexOf(' ');
            parameter = sql.substring(6, end);
            sql = sql.substring(end + 1);
        }
        String result = "";
        try {
            for (int i = 0; i < repeat; i++) {
                try (PreparedStatement statement = conn.prepareStatement(sql)) {
                    if (parameter != null) statement.setString(1, parameter);
                    try (ResultSet rows = statement.executeQuery()) {
                        ResultSetMetaData meta = rows.getMetaData();
                        StringBuilder out = new StringBuilder("{\"columns\": [");
                        for (int c = 1; c <= meta.getColumnCount(); c++) {
                            out.append(c > 1 ? ", " : "").append(quote(meta.getColumnLabel(c)));
                        }
                        out.append("], \"rows\": [");
                        boolean first = true;
                        while (rows.next()) {
                            out.append(first ? "[" : ", [");
                            first = false;
                            for (int c = 1; c <= meta.getColumnCount(); c++) {
                                out.append(c > 1 ? ", " : "").append(quote(rows.getString(c)));
                            }
                            out.append("]");
                        }
                        result = out.append("]}").toString();
                    }
                }
            }
        } catch (SQLException error) {
            result = "{\"error\": {\"code\": " + quote(error.getSQLState()) + ", \"message\": "
                + quote(error.getMessage()) + "}}";
        }
        return result;
    }

    public static void main(String[] args) throws Exception {
        Properties props = new Properties();
        props.setProperty("user", args[1]);
        int repeat = Integer.parseInt(args[2]);
        StringBuilder out = new StringBuilder("[");
        try (Connection conn = DriverManager.getConnection(args[0], props)) {
            for (int i = 3; i < args.length; i++) {
                out.append(i > 3 ? ", " : "").append(run(conn, args[i], repeat));
            }
        }
        System.out.println(out.append("]"));
    }
}
