-- Privacy budgets and the durable ledger of what was spent (docs/dp.md, "Accounting and audit").
-- Charges are written over the ledger's loopback connection (sql/core/66_ledger.sql), so that
-- the caller's ROLLBACK does not undo them; diffix_ledger owns the budgets, the ledger and the
-- definer functions that write them.

CREATE TABLE IF NOT EXISTS diffix.privacy_budgets (
  roleid oid PRIMARY KEY,
  epsilon_total numeric NOT NULL CHECK (epsilon_total >= 0),
  delta_total numeric NOT NULL CHECK (delta_total >= 0 AND delta_total < 1),
  epsilon_spent numeric NOT NULL DEFAULT 0,
  delta_spent numeric NOT NULL DEFAULT 0,
  renew_every interval CHECK (renew_every > interval '0'),
  period_start timestamptz NOT NULL DEFAULT pg_catalog.now()
);

-- One row per successful charge, never updated or deleted.
CREATE TABLE IF NOT EXISTS diffix.budget_ledger (
  id bigserial PRIMARY KEY,
  charged_at timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp(),
  roleid oid NOT NULL,
  role_name name NOT NULL,
  session_role name NOT NULL,
  epsilon numeric NOT NULL,
  delta numeric NOT NULL,
  mechanism text NOT NULL,
  sql text
);
-- As in the audit log (core/67_audit.sql): `sql` keeps at most audit_sql_max_bytes of the
-- statement, these its full length in bytes and sha256 (NULL in rows charged before they existed).
ALTER TABLE diffix.budget_ledger ADD COLUMN IF NOT EXISTS sql_bytes bigint;
ALTER TABLE diffix.budget_ledger ADD COLUMN IF NOT EXISTS sql_sha256 text;
ALTER TABLE diffix.privacy_budgets OWNER TO diffix_ledger;
ALTER TABLE diffix.budget_ledger OWNER TO diffix_ledger;
ALTER SEQUENCE diffix.budget_ledger_id_seq OWNER TO diffix_ledger;
REVOKE ALL ON diffix.privacy_budgets, diffix.budget_ledger FROM PUBLIC;

-- zCDP budgets and lifetime accounting (docs/dp.md, "Composition"), added in place: an upgrade
-- keeps every budget and ledger row. A budget's `unit` is what it counts: 'eps_delta' (epsilon
-- and delta add up) or 'rho' (zCDP: rho adds up; delta counts partition selection). Lifetime
-- totals (across renewals) start from the ledger's history; the lifetime_* caps are NULL for
-- none.
ALTER TABLE diffix.budget_ledger ADD COLUMN IF NOT EXISTS unit text NOT NULL DEFAULT 'eps_delta';
ALTER TABLE diffix.budget_ledger ADD COLUMN IF NOT EXISTS rho numeric;
ALTER TABLE diffix.budget_ledger ALTER COLUMN epsilon DROP NOT NULL;
ALTER TABLE diffix.privacy_budgets ADD COLUMN IF NOT EXISTS unit text NOT NULL DEFAULT 'eps_delta';
ALTER TABLE diffix.privacy_budgets ALTER COLUMN epsilon_total DROP NOT NULL;
ALTER TABLE diffix.privacy_budgets ADD COLUMN IF NOT EXISTS rho_total numeric;
ALTER TABLE diffix.privacy_budgets ADD COLUMN IF NOT EXISTS rho_spent numeric NOT NULL DEFAULT 0;
ALTER TABLE diffix.privacy_budgets ADD COLUMN IF NOT EXISTS conversion_delta numeric;
ALTER TABLE diffix.privacy_budgets ADD COLUMN IF NOT EXISTS lifetime_epsilon numeric;
ALTER TABLE diffix.privacy_budgets ADD COLUMN IF NOT EXISTS lifetime_delta numeric;
ALTER TABLE diffix.privacy_budgets ADD COLUMN IF NOT EXISTS lifetime_rho numeric;
ALTER TABLE diffix.privacy_budgets ADD COLUMN IF NOT EXISTS epsilon_lifetime numeric;
ALTER TABLE diffix.privacy_budgets ADD COLUMN IF NOT EXISTS delta_lifetime numeric;
ALTER TABLE diffix.privacy_budgets ADD COLUMN IF NOT EXISTS rho_lifetime numeric;
UPDATE diffix.privacy_budgets p
SET epsilon_lifetime = COALESCE((SELECT sum(l.epsilon) FROM diffix.budget_ledger l
                                 WHERE l.roleid = p.roleid AND l.unit = 'eps_delta'), 0),
    delta_lifetime = COALESCE((SELECT sum(l.delta) FROM diffix.budget_ledger l
                               WHERE l.roleid = p.roleid), 0),
    rho_lifetime = COALESCE((SELECT sum(l.rho) FROM diffix.budget_ledger l
                             WHERE l.roleid = p.roleid AND l.unit = 'rho'), 0)
WHERE p.epsilon_lifetime IS NULL OR p.delta_lifetime IS NULL OR p.rho_lifetime IS NULL;
ALTER TABLE diffix.privacy_budgets
  ALTER COLUMN epsilon_lifetime SET DEFAULT 0, ALTER COLUMN epsilon_lifetime SET NOT NULL,
  ALTER COLUMN delta_lifetime SET DEFAULT 0, ALTER COLUMN delta_lifetime SET NOT NULL,
  ALTER COLUMN rho_lifetime SET DEFAULT 0, ALTER COLUMN rho_lifetime SET NOT NULL;
ALTER TABLE diffix.privacy_budgets DROP CONSTRAINT IF EXISTS privacy_budgets_unit;
ALTER TABLE diffix.privacy_budgets ADD CONSTRAINT privacy_budgets_unit CHECK (
  (unit = 'eps_delta' AND epsilon_total IS NOT NULL AND rho_total IS NULL
   AND conversion_delta IS NULL AND lifetime_rho IS NULL)
  OR (unit = 'rho' AND rho_total >= 0 AND epsilon_total IS NULL AND conversion_delta > 0
      AND conversion_delta < 1 AND lifetime_epsilon IS NULL));
ALTER TABLE diffix.privacy_budgets DROP CONSTRAINT IF EXISTS privacy_budgets_lifetime;
ALTER TABLE diffix.privacy_budgets ADD CONSTRAINT privacy_budgets_lifetime CHECK (
  lifetime_epsilon >= 0 AND lifetime_rho >= 0 AND lifetime_delta >= 0 AND lifetime_delta < 1);

-- The start of the budget period that contains `at`: periods of renew_every from period_start.
CREATE OR REPLACE FUNCTION diffix._budget_period(period_start timestamptz, renew_every interval,
                                                 at timestamptz) RETURNS timestamptz
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  start timestamptz := period_start;
  whole bigint;
BEGIN
  IF renew_every IS NULL OR at < start + renew_every THEN
    RETURN start;
  END IF;
  -- jump close (months count as 30 days here), then step exactly
  whole := floor(extract(epoch FROM at - start) / extract(epoch FROM renew_every))::bigint - 1;
  IF whole > 0 THEN
    start := start + renew_every * whole;
  END IF;
  WHILE start + renew_every <= at LOOP
    start := start + renew_every;
  END LOOP;
  WHILE start > at LOOP
    start := start - renew_every;
  END LOOP;
  RETURN start;
END
$$;

-- (epsilon, delta)-DP implied by rho-zCDP: rho + 2 sqrt(rho ln(1/delta)) (Bun and Steinke 2016,
-- proposition 1.3).
CREATE OR REPLACE FUNCTION diffix._zcdp_epsilon(rho numeric, delta numeric) RETURNS numeric
LANGUAGE sql IMMUTABLE STRICT
SET search_path = pg_catalog, pg_temp
AS $$
  SELECT rho + 2 * sqrt(rho * ln(1 / delta))
$$;

-- A budget as it stands at `at` (a period that has passed counts as renewed). Remaining amounts
-- are the smaller of what the period and the lifetime cap leave. For zCDP budgets the epsilon
-- columns are the (epsilon, delta + conversion_delta)-DP equivalent of the rho columns, and
-- epsilon_remaining is NULL (rho_remaining is what counts).
DROP FUNCTION IF EXISTS diffix._budget_now(oid, timestamptz);
CREATE FUNCTION diffix._budget_now(target oid, at timestamptz)
RETURNS TABLE (roleid oid, unit text, epsilon_total numeric, delta_total numeric,
               epsilon_spent numeric, delta_spent numeric, epsilon_remaining numeric,
               delta_remaining numeric, renews_at timestamptz, rho_total numeric,
               rho_spent numeric, rho_remaining numeric, conversion_delta numeric,
               epsilon_lifetime numeric, delta_lifetime numeric, rho_lifetime numeric,
               lifetime_epsilon numeric, lifetime_delta numeric, lifetime_rho numeric,
               period_start timestamptz)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
  SELECT p.roleid, p.unit,
         CASE p.unit WHEN 'rho' THEN diffix._zcdp_epsilon(p.rho_total, p.conversion_delta)
                     ELSE p.epsilon_total END,
         p.delta_total,
         CASE p.unit WHEN 'rho' THEN diffix._zcdp_epsilon(s.rho_spent, p.conversion_delta)
                     ELSE s.epsilon_spent END,
         s.delta_spent,
         CASE p.unit WHEN 'eps_delta' THEN LEAST(p.epsilon_total - s.epsilon_spent,
                                                 p.lifetime_epsilon - p.epsilon_lifetime) END,
         LEAST(p.delta_total - s.delta_spent, p.lifetime_delta - p.delta_lifetime),
         s.period + p.renew_every,
         p.rho_total,
         CASE p.unit WHEN 'rho' THEN s.rho_spent END,
         CASE p.unit WHEN 'rho' THEN LEAST(p.rho_total - s.rho_spent,
                                           p.lifetime_rho - p.rho_lifetime) END,
         p.conversion_delta, p.epsilon_lifetime, p.delta_lifetime, p.rho_lifetime,
         p.lifetime_epsilon, p.lifetime_delta, p.lifetime_rho, s.period
  FROM diffix.privacy_budgets p
  CROSS JOIN LATERAL (
    SELECT diffix._budget_period(p.period_start, p.renew_every, at) AS period) c
  CROSS JOIN LATERAL (
    SELECT c.period,
           CASE WHEN c.period = p.period_start THEN p.epsilon_spent ELSE 0 END AS epsilon_spent,
           CASE WHEN c.period = p.period_start THEN p.delta_spent ELSE 0 END AS delta_spent,
           CASE WHEN c.period = p.period_start THEN p.rho_spent ELSE 0 END AS rho_spent) s
  WHERE target IS NULL OR p.roleid = target
$$;

-- Runs on the loopback connection (as the ledger login role). Locks the role's budget row, so
-- concurrent charges on one budget serialize and none overspends; renews a budget whose period
-- has passed. The cost is in the budget's unit: epsilon for 'eps_delta' (a charge without one,
-- i.e. Gaussian noise, is refused), for 'rho' the rho given or else epsilon^2 / 2 (an epsilon-DP
-- answer is epsilon^2 / 2-zCDP). The period's total and the lifetime cap must both cover it.
-- Returns {"status": charged | exceeded | wrong_unit | no_budget, "limit", remaining}.
DROP FUNCTION IF EXISTS diffix._ledger_spend(oid, name, name, numeric, numeric, text, text);
DROP FUNCTION IF EXISTS diffix._ledger_spend(oid, name, name, numeric, numeric, text, text,
                                             bigint, text);
CREATE OR REPLACE FUNCTION diffix._ledger_spend(
  target oid, target_name name, session_role name, epsilon numeric, delta numeric, rho numeric,
  mechanism text, statement text, statement_bytes bigint, statement_sha256 text)
RETURNS text
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  budget record;
  left_now record;
  at timestamptz := pg_catalog.clock_timestamp();
  period timestamptz;
  renewed boolean;
  cost numeric;
  spent numeric;
  limit_hit text;
BEGIN
  IF delta IS NULL OR delta < 0 OR delta = 'NaN' OR (epsilon IS NULL AND rho IS NULL)
     OR epsilon < 0 OR epsilon = 'NaN' OR rho < 0 OR rho = 'NaN' THEN
    RAISE EXCEPTION 'invalid charge' USING ERRCODE = 'invalid_parameter_value';
  END IF;
  SELECT * INTO budget FROM diffix.privacy_budgets p WHERE p.roleid = target FOR UPDATE;
  IF NOT FOUND THEN
    RETURN '{"status": "no_budget"}';
  END IF;
  cost := CASE budget.unit WHEN 'rho' THEN COALESCE(rho, epsilon * epsilon / 2) ELSE epsilon END;
  IF cost IS NULL THEN
    RETURN pg_catalog.jsonb_build_object('status', 'wrong_unit', 'unit', budget.unit)::text;
  END IF;
  period := diffix._budget_period(budget.period_start, budget.renew_every, at);
  renewed := period <> budget.period_start;
  spent := CASE WHEN renewed THEN 0 WHEN budget.unit = 'rho' THEN budget.rho_spent
                ELSE budget.epsilon_spent END;
  -- (CASE expressions in parentheses: PL/pgSQL ends an IF condition at its first THEN)
  IF spent + cost > COALESCE(budget.epsilon_total, budget.rho_total)
     OR (CASE WHEN renewed THEN 0 ELSE budget.delta_spent END) + delta > budget.delta_total THEN
    limit_hit := 'period';
  ELSIF (CASE budget.unit WHEN 'rho' THEN budget.rho_lifetime + cost > budget.lifetime_rho
                          ELSE budget.epsilon_lifetime + cost > budget.lifetime_epsilon END)
        OR budget.delta_lifetime + delta > budget.lifetime_delta THEN
    limit_hit := 'lifetime';
  END IF;
  IF limit_hit IS NULL THEN
    UPDATE diffix.privacy_budgets p
    SET period_start = period,
        epsilon_spent = CASE WHEN renewed THEN 0 ELSE p.epsilon_spent END
                        + CASE p.unit WHEN 'eps_delta' THEN cost ELSE 0 END,
        rho_spent = CASE WHEN renewed THEN 0 ELSE p.rho_spent END
                    + CASE p.unit WHEN 'rho' THEN cost ELSE 0 END,
        delta_spent = CASE WHEN renewed THEN 0 ELSE p.delta_spent END + delta,
        epsilon_lifetime = p.epsilon_lifetime + CASE p.unit WHEN 'eps_delta' THEN cost ELSE 0 END,
        rho_lifetime = p.rho_lifetime + CASE p.unit WHEN 'rho' THEN cost ELSE 0 END,
        delta_lifetime = p.delta_lifetime + delta
    WHERE p.roleid = target;
    INSERT INTO diffix.budget_ledger (roleid, role_name, session_role, unit, epsilon, delta, rho,
                                      mechanism, sql, sql_bytes, sql_sha256)
    VALUES (target, target_name, session_role, budget.unit, epsilon, delta,
            CASE budget.unit WHEN 'rho' THEN cost END, mechanism, statement, statement_bytes,
            statement_sha256);
  END IF;
  SELECT * INTO left_now FROM diffix._budget_now(target, at) b;
  RETURN pg_catalog.jsonb_build_object(
    'status', CASE WHEN limit_hit IS NULL THEN 'charged' ELSE 'exceeded' END,
    'limit', limit_hit, 'unit', budget.unit, 'cost', cost,
    'epsilon_remaining', left_now.epsilon_remaining,
    'delta_remaining', left_now.delta_remaining, 'rho_remaining', left_now.rho_remaining,
    'renews_at', left_now.renews_at)::text;
END
$$;

-- Charges the role the session acts as (SET ROLE's role, else the session user; never an
-- argument) for one answer, durably, before returning what is left. epsilon: the answer is
-- epsilon-DP (NULL for Gaussian noise); rho: its zCDP cost when not epsilon^2 / 2. Raises,
-- spending nothing, when the role has no budget, not enough of it, or one in the other unit.
-- The ledger keeps at most audit_sql_max_bytes of the statement (diffix._kept_text,
-- core/67_audit.sql) and 64 characters of the mechanism.
DROP FUNCTION IF EXISTS diffix._charge_budget(double precision, double precision, text, text);
CREATE OR REPLACE FUNCTION diffix._charge_budget(
  epsilon double precision, delta double precision, statement text, mechanism text,
  rho double precision DEFAULT NULL,
  OUT epsilon_remaining double precision, OUT delta_remaining double precision,
  OUT rho_remaining double precision)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  role_name name := diffix._invoking_role();
  target oid := (SELECT r.oid FROM pg_catalog.pg_roles r WHERE r.rolname = role_name);
  kept record;
  outcome jsonb;
  asked text;
  left_text text;
BEGIN
  IF (epsilon IS NULL AND rho IS NULL) OR delta IS NULL OR NOT delta >= 0 OR delta >= 1
     OR delta = 'NaN' OR NOT COALESCE(epsilon > 0 AND epsilon < 'Infinity', true)
     OR NOT COALESCE(rho > 0 AND rho < 'Infinity', true) THEN
    RAISE EXCEPTION 'invalid privacy cost: epsilon %, delta %, rho %', epsilon, delta, rho
      USING ERRCODE = 'invalid_parameter_value',
            HINT = 'epsilon and rho must be positive finite numbers (one may be NULL) and '
                   'delta a number in [0, 1)';
  END IF;
  SELECT * INTO kept FROM diffix._kept_text(statement, diffix._audit_sql_max_bytes());
  outcome := diffix._loopback(pg_catalog.format(
    'SELECT diffix._ledger_spend(%s, %L, %L, %L::numeric, %L::numeric, %L::numeric, %L, %L, '
    '%L::bigint, %L)',
    target, role_name, pg_catalog.session_user(), epsilon::numeric, delta::numeric,
    rho::numeric, COALESCE(pg_catalog.left(mechanism, 64), 'dp'), kept.kept, kept.full_bytes,
    kept.sha256))::jsonb;
  IF outcome ->> 'status' = 'charged' THEN
    epsilon_remaining := (outcome ->> 'epsilon_remaining')::double precision;
    delta_remaining := (outcome ->> 'delta_remaining')::double precision;
    rho_remaining := (outcome ->> 'rho_remaining')::double precision;
    RETURN;
  ELSIF outcome ->> 'status' = 'no_budget' THEN
    RAISE EXCEPTION 'role "%" has no privacy budget', role_name
      USING ERRCODE = 'insufficient_privilege',
            DETAIL = 'differentially private answers are paid for from a budget set per role',
            HINT = pg_catalog.format('an administrator sets one: '
                                     'CALL diffix.set_privacy_budget(%L, epsilon, delta)',
                                     role_name);
  ELSIF outcome ->> 'status' = 'wrong_unit' THEN
    RAISE EXCEPTION 'Gaussian noise is accounted in zCDP (rho), and role "%" has an '
                    '(epsilon, delta) budget', role_name
      USING ERRCODE = 'invalid_parameter_value',
            DETAIL = 'nothing was spent',
            HINT = 'SELECT diffix.set(''dp_noise'', ''laplace''), or an administrator sets a '
                   'zCDP budget: CALL diffix.set_privacy_budget_zcdp(role, rho)';
  END IF;
  IF outcome ->> 'unit' = 'rho' THEN
    asked := pg_catalog.format('rho %s, delta %s', outcome ->> 'cost', delta);
    left_text := pg_catalog.format('rho %s, delta %s', outcome ->> 'rho_remaining',
                                   outcome ->> 'delta_remaining');
  ELSE
    asked := pg_catalog.format('epsilon %s, delta %s', epsilon, delta);
    left_text := pg_catalog.format('epsilon %s, delta %s', outcome ->> 'epsilon_remaining',
                                   outcome ->> 'delta_remaining');
  END IF;
  IF outcome ->> 'limit' = 'lifetime' THEN
    RAISE EXCEPTION 'lifetime privacy budget exceeded: this query costs %; role "%" has % left '
                    'for its lifetime', asked, role_name, left_text
      USING ERRCODE = 'program_limit_exceeded',
            DETAIL = 'nothing was spent',
            HINT = 'renewal does not restore a lifetime budget; ask for less, or ask an '
                   'administrator to raise the lifetime cap';
  END IF;
  RAISE EXCEPTION 'privacy budget exceeded: this query costs %; role "%" has % left',
                  asked, role_name, left_text
    USING ERRCODE = 'program_limit_exceeded',
          DETAIL = 'nothing was spent',
          HINT = CASE WHEN outcome ->> 'renews_at' IS NOT NULL
                      THEN pg_catalog.format('ask for a smaller epsilon, or wait until the '
                                             'budget renews at %s', outcome ->> 'renews_at')
                      ELSE 'ask for a smaller epsilon, or ask an administrator for more budget' END;
END
$$;

-- Budgets: analysts see their own row, administrators every role's.
DROP FUNCTION IF EXISTS diffix.privacy_budget();
CREATE FUNCTION diffix.privacy_budget()
RETURNS TABLE (role name, epsilon_total numeric, delta_total numeric, epsilon_spent numeric,
               delta_spent numeric, epsilon_remaining numeric, delta_remaining numeric,
               renews_at timestamptz, unit text, rho_total numeric, rho_spent numeric,
               rho_remaining numeric, conversion_delta numeric, epsilon_lifetime numeric,
               delta_lifetime numeric, rho_lifetime numeric, lifetime_epsilon numeric,
               lifetime_delta numeric, lifetime_rho numeric)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
  SELECT r.rolname, b.epsilon_total, b.delta_total, b.epsilon_spent, b.delta_spent,
         b.epsilon_remaining, b.delta_remaining, b.renews_at, b.unit, b.rho_total, b.rho_spent,
         b.rho_remaining, b.conversion_delta, b.epsilon_lifetime, b.delta_lifetime,
         b.rho_lifetime, b.lifetime_epsilon, b.lifetime_delta, b.lifetime_rho
  -- an analyst's own budget only is computed (the DP path reads it before every answer)
  FROM diffix._budget_now(CASE WHEN NOT diffix._is_admin(diffix._invoking_role())
                               THEN (SELECT o.oid FROM pg_roles o
                                     WHERE o.rolname = diffix._invoking_role()) END,
                          clock_timestamp()) b
  JOIN pg_roles r ON r.oid = b.roleid
  WHERE diffix._is_admin(diffix._invoking_role()) OR r.rolname = diffix._invoking_role()
  ORDER BY r.rolname
$$;

-- Writes a role's budget for the two procedures below (which check that the caller is an
-- administrator). What was spent in the current period stays spent; changing the period or the
-- unit starts a new period now (spent 0 in the new unit). Lifetime totals are never reset.
CREATE OR REPLACE FUNCTION diffix._write_budget(
  role_name text, budget_unit text, amount double precision, delta double precision,
  renew_every interval, conversion_delta double precision, lifetime_amount double precision,
  lifetime_delta double precision) RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  target oid := diffix._role_oid(role_name);
  amount_name text := CASE budget_unit WHEN 'rho' THEN 'rho' ELSE 'epsilon' END;
BEGIN
  IF amount IS NULL OR NOT amount >= 0 OR amount = 'Infinity' OR amount = 'NaN' THEN
    RAISE EXCEPTION 'invalid % %', amount_name, amount
      USING ERRCODE = 'invalid_parameter_value',
            HINT = pg_catalog.format('%s is a finite number >= 0', amount_name);
  END IF;
  IF delta IS NULL OR NOT delta >= 0 OR NOT delta < 1 OR delta = 'NaN' THEN
    RAISE EXCEPTION 'invalid delta %', delta
      USING ERRCODE = 'invalid_parameter_value',
            HINT = 'delta is a number in [0, 1), typically below 1/(number of people)';
  END IF;
  IF renew_every IS NOT NULL AND NOT renew_every > interval '0' THEN
    RAISE EXCEPTION 'invalid renewal period %', renew_every
      USING ERRCODE = 'invalid_parameter_value', HINT = 'renew_every is a positive interval';
  END IF;
  IF budget_unit = 'rho' AND (conversion_delta IS NULL OR NOT conversion_delta > 0
                              OR NOT conversion_delta < 1 OR conversion_delta = 'NaN') THEN
    RAISE EXCEPTION 'invalid conversion_delta %', conversion_delta
      USING ERRCODE = 'invalid_parameter_value',
            HINT = 'conversion_delta, the delta at which the (epsilon, delta)-DP equivalent is '
                   'stated, is a number in (0, 1)';
  END IF;
  IF lifetime_amount IS NOT NULL AND (NOT lifetime_amount >= 0 OR lifetime_amount = 'Infinity'
                                      OR lifetime_amount = 'NaN') THEN
    RAISE EXCEPTION 'invalid lifetime_% %', amount_name, lifetime_amount
      USING ERRCODE = 'invalid_parameter_value',
            HINT = pg_catalog.format('lifetime_%s is a finite number >= 0, or NULL for no cap',
                                     amount_name);
  END IF;
  IF lifetime_delta IS NOT NULL AND (NOT lifetime_delta >= 0 OR NOT lifetime_delta < 1
                                     OR lifetime_delta = 'NaN') THEN
    RAISE EXCEPTION 'invalid lifetime_delta %', lifetime_delta
      USING ERRCODE = 'invalid_parameter_value',
            HINT = 'lifetime_delta is a number in [0, 1), or NULL for no cap';
  END IF;
  INSERT INTO diffix.privacy_budgets AS p (roleid, unit, epsilon_total, rho_total, delta_total,
                                           conversion_delta, renew_every, lifetime_epsilon,
                                           lifetime_rho, lifetime_delta)
  VALUES (target, budget_unit,
          CASE budget_unit WHEN 'eps_delta' THEN amount::numeric END,
          CASE budget_unit WHEN 'rho' THEN amount::numeric END, delta::numeric,
          CASE budget_unit WHEN 'rho' THEN conversion_delta::numeric END, renew_every,
          CASE budget_unit WHEN 'eps_delta' THEN lifetime_amount::numeric END,
          CASE budget_unit WHEN 'rho' THEN lifetime_amount::numeric END,
          lifetime_delta::numeric)
  ON CONFLICT (roleid) DO UPDATE
    SET unit = EXCLUDED.unit, epsilon_total = EXCLUDED.epsilon_total,
        rho_total = EXCLUDED.rho_total, delta_total = EXCLUDED.delta_total,
        conversion_delta = EXCLUDED.conversion_delta, renew_every = EXCLUDED.renew_every,
        lifetime_epsilon = EXCLUDED.lifetime_epsilon, lifetime_rho = EXCLUDED.lifetime_rho,
        lifetime_delta = EXCLUDED.lifetime_delta,
        epsilon_spent = CASE WHEN p.unit = EXCLUDED.unit THEN p.epsilon_spent ELSE 0 END,
        rho_spent = CASE WHEN p.unit = EXCLUDED.unit THEN p.rho_spent ELSE 0 END,
        delta_spent = CASE WHEN p.unit = EXCLUDED.unit THEN p.delta_spent ELSE 0 END,
        period_start = CASE WHEN p.renew_every IS NOT DISTINCT FROM EXCLUDED.renew_every
                                 AND p.unit = EXCLUDED.unit
                            THEN p.period_start ELSE now() END;
END
$$;

-- Sets a role's (epsilon, delta) budget: epsilon and delta add up over its answers. Lifetime
-- caps bound the sums across renewals. Administrators only. Ordinary transactional semantics:
-- an admin's ROLLBACK undoes it.
DROP PROCEDURE IF EXISTS diffix.set_privacy_budget(text, double precision, double precision,
                                                   interval);
CREATE OR REPLACE PROCEDURE diffix.set_privacy_budget(
  role_name text, epsilon double precision, delta double precision,
  renew_every interval DEFAULT NULL, lifetime_epsilon double precision DEFAULT NULL,
  lifetime_delta double precision DEFAULT NULL)
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  PERFORM diffix._require_admin('set privacy budgets');
  PERFORM diffix._write_budget(role_name, 'eps_delta', epsilon, delta, renew_every, NULL,
                               lifetime_epsilon, lifetime_delta);
END
$$;

-- Sets a role's zCDP budget: rho adds up over its answers (an epsilon-DP answer costs
-- epsilon^2 / 2, a Gaussian one the rho it was given), delta counts partition selection, and
-- privacy_budget() states the (epsilon, delta + conversion_delta)-DP equivalent. Administrators
-- only.
CREATE OR REPLACE PROCEDURE diffix.set_privacy_budget_zcdp(
  role_name text, rho double precision, renew_every interval DEFAULT NULL,
  delta double precision DEFAULT 0, conversion_delta double precision DEFAULT 1e-6,
  lifetime_rho double precision DEFAULT NULL, lifetime_delta double precision DEFAULT NULL)
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  PERFORM diffix._require_admin('set privacy budgets');
  PERFORM diffix._write_budget(role_name, 'rho', rho, delta, renew_every, conversion_delta,
                               lifetime_rho, lifetime_delta);
END
$$;

ALTER FUNCTION diffix._ledger_spend(oid, name, name, numeric, numeric, numeric, text, text,
                                    bigint, text) OWNER TO diffix_ledger;
ALTER FUNCTION diffix._charge_budget(double precision, double precision, text, text,
                                     double precision) OWNER TO diffix_ledger;
ALTER FUNCTION diffix.privacy_budget() OWNER TO diffix_ledger;
ALTER FUNCTION diffix._write_budget(text, text, double precision, double precision, interval,
                                    double precision, double precision, double precision)
  OWNER TO diffix_ledger;
ALTER PROCEDURE diffix.set_privacy_budget(text, double precision, double precision, interval,
                                          double precision, double precision)
  OWNER TO diffix_ledger;
ALTER PROCEDURE diffix.set_privacy_budget_zcdp(text, double precision, interval,
                                               double precision, double precision,
                                               double precision, double precision)
  OWNER TO diffix_ledger;
REVOKE ALL ON FUNCTION
  diffix._ledger_spend(oid, name, name, numeric, numeric, numeric, text, text, bigint, text),
  diffix._budget_now(oid, timestamptz),
  diffix._write_budget(text, text, double precision, double precision, interval,
                       double precision, double precision, double precision) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION
  diffix._ledger_spend(oid, name, name, numeric, numeric, numeric, text, text, bigint, text),
  diffix._budget_now(oid, timestamptz) TO diffix_ledger;
-- Charging spends the caller's own budget; only the gate (owner diffix_engine) calls it.
REVOKE ALL ON FUNCTION diffix._charge_budget(double precision, double precision, text, text,
                                             double precision) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION diffix._charge_budget(double precision, double precision, text, text,
                                                double precision) TO diffix_engine;
