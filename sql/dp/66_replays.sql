-- Free replays of DP answers (docs/dp.md, "Free replays"): the first answer to a query, stored
-- per role and budget period under a key the engine computes (dp/replay.py: the normalized SQL,
-- epsilon, delta, noise, metadata and the personal table's snapshot), is returned again for the
-- same key within the period at no cost. Only diffix_ledger (owner) and, through the two
-- functions below, the engine (diffix_engine) read or write it.
CREATE TABLE IF NOT EXISTS diffix.dp_replays (
  roleid oid NOT NULL,
  replay_key text NOT NULL,
  period_start timestamptz NOT NULL,
  answer text NOT NULL,
  stored_at timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp(),
  PRIMARY KEY (roleid, replay_key)
);
ALTER TABLE diffix.dp_replays OWNER TO diffix_ledger;
REVOKE ALL ON diffix.dp_replays FROM PUBLIC;

-- Runs on the loopback connection, so a stored answer survives the caller's ROLLBACK as its
-- charge does. Keeps the first answer of a key in the role's current period and forgets the
-- role's answers of earlier periods.
CREATE OR REPLACE FUNCTION diffix._dp_replay_put(target oid, key text, answer text) RETURNS text
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  period timestamptz;
BEGIN
  SELECT b.period_start INTO period FROM diffix._budget_now(target, pg_catalog.clock_timestamp()) b;
  IF period IS NULL THEN
    RETURN 'no_budget';
  END IF;
  DELETE FROM diffix.dp_replays r
  WHERE r.roleid OPERATOR(pg_catalog.=) target
    AND r.period_start OPERATOR(pg_catalog.<>) period;
  INSERT INTO diffix.dp_replays (roleid, replay_key, period_start, answer)
  VALUES (target, key, period, answer)
  ON CONFLICT (roleid, replay_key) DO NOTHING;
  RETURN 'stored';
END
$$;

-- The stored answer of `key` for the role the session acts as, in its budget's current period;
-- NULL when there is none.
CREATE OR REPLACE FUNCTION diffix._dp_replay(key text) RETURNS text
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
  SELECT r.answer
  FROM pg_catalog.pg_roles o
  JOIN diffix.dp_replays r ON r.roleid OPERATOR(pg_catalog.=) o.oid
  JOIN diffix._budget_now(o.oid, pg_catalog.clock_timestamp()) b
    ON b.period_start OPERATOR(pg_catalog.=) r.period_start
  WHERE o.rolname OPERATOR(pg_catalog.=) diffix._invoking_role()
    AND r.replay_key OPERATOR(pg_catalog.=) key
$$;

-- Stores the answer of `key` for the role the session acts as, committed before returning.
CREATE OR REPLACE FUNCTION diffix._dp_replay_store(key text, answer text) RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  PERFORM diffix._loopback(pg_catalog.format(
    'SELECT diffix._dp_replay_put(%s, %L, %L)',
    (SELECT o.oid FROM pg_catalog.pg_roles o
     WHERE o.rolname OPERATOR(pg_catalog.=) diffix._invoking_role()), key, answer));
END
$$;

ALTER FUNCTION diffix._dp_replay_put(oid, text, text) OWNER TO diffix_ledger;
ALTER FUNCTION diffix._dp_replay(text) OWNER TO diffix_ledger;
ALTER FUNCTION diffix._dp_replay_store(text, text) OWNER TO diffix_ledger;
REVOKE ALL ON FUNCTION diffix._dp_replay_put(oid, text, text), diffix._dp_replay(text),
  diffix._dp_replay_store(text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION diffix._dp_replay_put(oid, text, text) TO diffix_ledger;
-- Only the engine (owner of the gate) reads and stores answers.
GRANT EXECUTE ON FUNCTION diffix._dp_replay(text), diffix._dp_replay_store(text, text)
  TO diffix_engine;
