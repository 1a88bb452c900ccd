// Runs a fixed scenario through node-postgres (extended protocol, text format) and prints
// one JSON line with what it saw. Connection settings come from the standard PG* variables.
const { Client } = require('pg');

async function main() {
  const table = process.env.TABLE || 'driver_check';
  const c = new Client();
  await c.connect();
  const out = {};
  await c.query(`CREATE TABLE IF NOT EXISTS ${table} (id serial PRIMARY KEY, email bytea, age bytea, note text)`).catch(() => {});
  if (process.env.PROTECTED === '1') {
    await c.query(`INSERT INTO ${table} (email, age, note) VALUES ($1, $2, $3)`, ['node@example.com', 33, 'from node']);
    const r = await c.query(`SELECT email, age, note FROM ${table} WHERE email = $1`, ['node@example.com']);
    out.row = r.rows[0];
    const any = await c.query(`SELECT count(*)::int AS n FROM ${table} WHERE email = ANY($1)`, [['node@example.com', 'nobody']]);
    out.any = any.rows[0].n;
    const star = await c.query({ text: `SELECT * FROM ${table} WHERE age = $1`, values: [33], rowMode: 'array' });
    out.star = star.rows.length;
    try {
      await c.query(`SELECT * FROM ${table} WHERE email LIKE $1`, ['n%']);
      out.like = 'accepted';
    } catch (e) {
      out.like = e.code;
    }
  } else {
    const r = await c.query('SELECT $1::int + 1 AS n, $2::text AS s', [41, 'héllo']);
    out.row = r.rows[0];
  }
  try {
    await c.query('SELECT 1/0');
  } catch (e) {
    out.error = e.code;
  }
  out.after = (await c.query('SELECT 1 AS one')).rows[0].one;
  await c.end();
  console.log(JSON.stringify(out));
}

main().catch((e) => {
  console.error(e.stack || String(e));
  process.exit(1);
});
