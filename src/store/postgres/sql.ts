/**
 * SQL as tagged templates for node-postgres: values become numbered parameters ($1, $2, …),
 * nested statements are inlined with their own values renumbered, so a statement is built from
 * parts without ever concatenating a value into its text.
 *
 * ```
 * const now = sql`COALESCE(${t}::bigint, jq_now())`;
 * await db.query(sql`UPDATE jobs SET updated_at = ${now} WHERE id = ${id}`);
 * ```
 */
export class Sql {
  constructor(
    readonly strings: readonly string[],
    readonly values: readonly unknown[],
  ) {}
}

export function sql(strings: TemplateStringsArray, ...values: unknown[]): Sql {
  return new Sql(strings, values);
}

/** Text that is part of the statement itself (never a value from outside). */
export function raw(text: string): Sql {
  return new Sql([text], []);
}

/** A quoted identifier (a schema's name). */
export function ident(name: string): Sql {
  return raw(`"${name.replace(/"/g, '""')}"`);
}

/** `parts` separated by `separator`. */
export function joinSql(parts: Sql[], separator: Sql): Sql {
  if (parts.length === 0) return raw("");
  return parts.reduce((acc, part) => sql`${acc}${separator}${part}`);
}

/** `(col, …) VALUES (…), (…)` for a multi-row INSERT; every row has the first row's columns. */
export function insertValues(rows: Record<string, unknown>[]): Sql {
  const columns = Object.keys(rows[0] ?? {});
  const tuple = (row: Record<string, unknown>) =>
    sql`(${joinSql(
      columns.map((c) => sql`${row[c] ?? null}`),
      raw(", "),
    )})`;
  return sql`(${raw(columns.join(", "))}) VALUES ${joinSql(rows.map(tuple), raw(", "))}`;
}

/** The text with $n placeholders and the values in order, as node-postgres takes them. */
export function render(q: Sql): { text: string; values: unknown[] } {
  const values: unknown[] = [];
  let text = "";
  const walk = (s: Sql) => {
    s.strings.forEach((part, i) => {
      text += part;
      if (i >= s.values.length) return;
      const value = s.values[i];
      if (value instanceof Sql) walk(value);
      else {
        values.push(value === undefined ? null : value);
        text += `$${values.length}`;
      }
    });
  };
  walk(q);
  return { text, values };
}
