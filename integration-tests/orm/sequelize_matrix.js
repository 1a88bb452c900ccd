// The ORM matrix scenario for Sequelize 6 on node-postgres (default settings: values are
// escaped into the SQL text as literals, not sent as parameters). Connection from the PG*
// variables; prints one JSON line like the Python scenarios (see matrix_common.py), with the
// same rows and operations.
'use strict';

const { Sequelize, DataTypes, Op, UniqueConstraintError } = require('sequelize');

const SINGLE_ROWS = [0, 4, 5, 6];
const BULK_ROWS = [1, 2, 3];
const PROTECTED = ['v_text', 'v_varchar', 'v_int2', 'v_int4', 'v_int8', 'v_bool', 'v_numeric',
  'v_date', 'v_timestamp', 'v_timestamptz', 'v_uuid', 'v_bytea', 'v_jsonb'];

// Row n, as matrix_common.row(n). node-postgres reads int8 and numeric as strings (exact),
// date as 'YYYY-MM-DD' (DATEONLY), timestamps as Date (millisecond precision: the values here
// have whole milliseconds so they round-trip exactly).
function row(n) {
  const hex = (0x21n + BigInt(n)).toString(16).padStart(2, '0');
  return {
    label: `row-${n}`,
    v_text: `user${n}@example.com`,
    v_varchar: `Zoë ✓ ${n}`,
    v_int2: -32768 + n,
    v_int4: 2147483647 - n,
    v_int8: (-9223372036854775808n + BigInt(n)).toString(),
    v_bool: n % 2 === 0,
    v_numeric: `${n}12.50`.replace(/^0+(?=\d)/, ''),
    v_date: new Date(Date.UTC(2024, 1, 29 + n)).toISOString().slice(0, 10),
    v_timestamp: new Date(Date.UTC(2024, 1, 29, 13 + n, 45, 30, 123)),
    v_timestamptz: new Date(Date.UTC(2024, 1, 29, 13, 45 + n, 30, 654)),
    v_uuid: `12345678-9abc-def0-0fed-cba9876543${hex}`,
    v_bytea: Buffer.from([0, 1, 254, 255, n % 256]),
    v_jsonb: { n, list: [1, 'two', null, 1.5], nested: { 'ü': true } },
  };
}

const canonical = (v) => {
  if (v instanceof Date) return `Date(${v.toISOString()})`;
  if (Buffer.isBuffer(v)) return `Buffer(${v.toString('hex')})`;
  if (v && typeof v === 'object') {
    return JSON.stringify(Object.fromEntries(Object.keys(v).sort().map((k) => [k, canonical(v[k])])));
  }
  return JSON.stringify(v);
};

// numeric compared by value here (12.5 = 12.50); numeric_scale checks the text itself.
const byValue = (c, v) => (c === 'v_numeric' && typeof v === 'string'
  ? v.replace(/(\.\d*?)0+$/, '$1').replace(/\.$/, '') : v);

function mismatches(expected, got) {
  return PROTECTED.filter((c) => canonical(byValue(c, expected[c])) !== canonical(byValue(c, got[c])))
    .map((c) => `${c}: wrote ${canonical(expected[c])}, read ${canonical(got && got[c])}`);
}

function assertSame(expected, item) {
  if (!item) throw new Error('row not found');
  const bad = mismatches(expected, item.get({ plain: true }));
  if (bad.length) throw new Error(bad.join('; '));
}

const CIPHERTEXT = /\\x0[12][0-9a-f]{16,}|[0-9a-f]{40,}/i;

async function main() {
  const env = process.env;
  const sequelize = new Sequelize(env.PGDATABASE, env.PGUSER, env.PGPASSWORD, {
    host: env.PGHOST, port: Number(env.PGPORT), dialect: 'postgres', logging: false,
    // One connection, so every operation (and the statement after an error) shares a session.
    pool: { max: 1, min: 1 },
    timezone: '+00:00',
  });
  const Item = sequelize.define('Item', {
    label: DataTypes.TEXT,
    v_text: { type: DataTypes.TEXT, unique: true },
    v_varchar: DataTypes.STRING(50),
    v_int2: DataTypes.SMALLINT,
    v_int4: DataTypes.INTEGER,
    v_int8: DataTypes.BIGINT,
    v_bool: DataTypes.BOOLEAN,
    v_numeric: DataTypes.DECIMAL(12, 2),
    v_date: DataTypes.DATEONLY,
    v_timestamp: DataTypes.DATE,
    v_timestamptz: DataTypes.DATE,
    v_uuid: DataTypes.UUID,
    v_bytea: DataTypes.BLOB,
    v_jsonb: DataTypes.JSONB,
  }, { tableName: 'orm_items', timestamps: false });

  const ops = {};
  const ids = {};
  let a = row(0);
  const run = async (name, fn) => {
    try {
      await fn();
      ops[name] = { ok: true, error: '' };
    } catch (e) {
      ops[name] = { ok: false, error: `${e.name}: ${e.message}`.slice(0, 600) };
      console.error(name, e);
    }
  };
  const labels = async (where) => (await Item.findAll({ where, order: [['id', 'ASC']] }))
    .map((i) => i.label);
  const expectLabels = (got, want, what) => {
    if (JSON.stringify(got) !== JSON.stringify(want)) throw new Error(`${what} found ${got}`);
  };

  await run('single_insert', async () => {
    for (const n of SINGLE_ROWS) ids[n] = (await Item.create(row(n))).id;
  });
  await run('read_by_key', async () => {
    for (const n of SINGLE_ROWS) assertSame(row(n), await Item.findByPk(ids[n]));
  });
  await run('bulk_insert', async () => {
    // bulkCreate: one INSERT ... VALUES (...), (...) RETURNING with literal values.
    await Item.bulkCreate(BULK_ROWS.map(row));
    const got = await Item.findAll({ where: { label: BULK_ROWS.map((n) => `row-${n}`) },
      order: [['id', 'ASC']] });
    expectLabels(got.map((i) => i.label), BULK_ROWS.map((n) => `row-${n}`), 'bulk');
    got.forEach((item, i) => assertSame(row(BULK_ROWS[i]), item));
  });
  await run('filter_eq', async () => {
    expectLabels(await labels({ v_text: a.v_text }), ['row-0'], 'v_text =');
    // Not v_jsonb: Sequelize turns { col: object } on JSONB into path tests
    // ("col"#>>'{n}') = '5', which the proxy refuses (0A000): no JSON operator works on
    // ciphertext.
    for (const col of PROTECTED.filter((c) => c !== 'v_bool' && c !== 'v_jsonb')) {
      const found = await labels({ [col]: row(5)[col] });
      if (!found.includes('row-5')) throw new Error(`${col} = found ${found}`);
    }
  });
  await run('filter_bool', async () => {
    for (const flag of [true, false]) {
      const found = await labels({ v_bool: flag });
      for (const n of SINGLE_ROWS.filter((m) => row(m).v_bool === flag)) {
        if (!found.includes(`row-${n}`)) throw new Error(`v_bool = ${flag} found ${found}`);
      }
    }
  });
  await run('filter_in', async () => {
    expectLabels(await labels({ v_text: { [Op.in]: [row(4).v_text, row(6).v_text, 'nobody@example.com'] } }),
      ['row-4', 'row-6'], 'v_text IN');
    expectLabels(await labels({ v_int4: [row(5).v_int4, row(6).v_int4] }),
      ['row-5', 'row-6'], 'v_int4 IN');
  });
  await run('update', async () => {
    const item = await Item.findByPk(ids[0]);
    a = { ...a, v_text: 'changed@example.com', v_jsonb: { changed: [1] } };
    await item.update({ v_text: a.v_text, v_jsonb: a.v_jsonb });
    await Item.update({ v_int4: 7 }, { where: { v_text: a.v_text } });
    a.v_int4 = 7;
    assertSame(a, await Item.findByPk(ids[0]));
  });
  await run('unique_violation', async () => {
    try {
      await Item.create({ ...row(9), v_text: a.v_text });
      throw new Error('the duplicate was accepted');
    } catch (e) {
      if (!(e instanceof UniqueConstraintError)) throw e;
      const pg = e.parent;
      if (pg.code !== '23505') throw new Error(`expected 23505, got ${pg.code}`);
      for (const text of [pg.message || '', pg.detail || '']) {
        if (CIPHERTEXT.test(text)) throw new Error(`ciphertext in the error: ${text}`);
      }
      // The key as the app role sees it, as PostgreSQL would show it without the proxy.
      const want = `Key (v_text)=(${a.v_text}) already exists.`;
      if (pg.detail !== want) throw new Error(`DETAIL ${pg.detail}, expected ${want}`);
    }
    if (await Item.count({ where: { v_text: a.v_text } }) !== 1) throw new Error('count after error');
  });
  await run('delete', async () => {
    await (await Item.findOne({ where: { v_text: row(5).v_text } })).destroy();
    await Item.destroy({ where: { v_int8: row(6).v_int8 } });
    const left = await labels({ label: ['row-5', 'row-6'] });
    if (left.length) throw new Error(`still there: ${left}`);
  });
  await run('rollback', async () => {
    const t = await sequelize.transaction();
    await Item.create(row(7), { transaction: t });
    await t.rollback();
    if (await Item.count({ where: { v_text: row(7).v_text } })) throw new Error('rolled back row is there');
  });
  await run('numeric_scale', async () => {
    // node-postgres returns numeric as PostgreSQL's text: numeric(12,2) prints 12.50.
    const value = (await Item.findByPk(ids[0])).v_numeric;
    if (value !== '12.50') throw new Error(`wrote '12.50', read ${JSON.stringify(value)}`);
  });
  await run('next_statement', async () => {
    const [[r]] = await sequelize.query('SELECT 1 AS one');
    if (r.one !== 1) throw new Error('SELECT 1');
  });
  await sequelize.close();
  console.log(JSON.stringify({ orm: 'sequelize', version: require('sequelize/package.json').version, ops }));
}

main().catch((e) => { console.error(e); process.exit(1); });
