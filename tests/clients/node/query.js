// Reads {"connection": {...}, "queries": [{"sql": ..., "values": [...]}]} on stdin and prints,
// per query, {"columns": [...], "rows": [[text or null, ...]]} or {"error": {code, message}}.
// Values stay as the server's text: no type parsing, so the comparison sees the wire format.
const { Client } = require("pg");

const raw = { getTypeParser: () => (value) => value };

async function main() {
  const spec = JSON.parse(require("fs").readFileSync(0, "utf8"));
  const client = new Client(spec.connection);
  await client.connect();
  const results = [];
  for (const query of spec.queries) {
    try {
      const config = { text: query.sql, types: raw, rowMode: "array" };
      if (query.values) config.values = query.values;
      const result = await client.query(config);
      results.push({ columns: result.fields.map((f) => f.name), rows: result.rows });
    } catch (error) {
      results.push({ error: { code: error.code, message: error.message } });
    }
  }
  await client.end();
  process.stdout.write(JSON.stringify(results));
}

main().catch((error) => {
  process.stderr.write(String(error.stack || error));
  process.exit(1);
});
