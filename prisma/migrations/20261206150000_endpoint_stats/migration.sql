-- Endpoint.stats reads a rollup, "EndpointStat": attempts per endpoint,
-- 5-minute bin of their start and latency bucket, counted by outcome. A
-- statement-level trigger on "Attempt" keeps it: once per UPDATE statement
-- (a batch of settled tries is one), it adds the attempts that statement
-- moved from SENDING to an outcome, one upsert per (endpoint, bin, bucket).
-- In the database, so every path that records an attempt (the settle batch,
-- a failure, a lost worker's attempt closed) is counted, whatever engine
-- runs it. The bucket bounds are LATENCY_BOUNDS_MS in
-- src/domain/endpoint-health.ts; width_bucket gives the number of bounds at
-- or below the duration.

-- CreateTable
CREATE TABLE "EndpointStat" (
    "endpointId" TEXT NOT NULL,
    "bin" TIMESTAMP(3) NOT NULL,
    "latencyBucket" SMALLINT NOT NULL,
    "succeeded" INTEGER NOT NULL DEFAULT 0,
    "failed" INTEGER NOT NULL DEFAULT 0,

    CONSTRAINT "EndpointStat_pkey" PRIMARY KEY ("endpointId","bin","latencyBucket")
);

-- CreateIndex
CREATE INDEX "EndpointStat_bin_idx" ON "EndpointStat"("bin");

CREATE FUNCTION dispatch_endpoint_stat_bucket(duration_ms integer) RETURNS smallint
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT COALESCE(width_bucket(duration_ms,
    ARRAY[1,2,3,5,7,10,15,20,30,50,70,100,150,200,300,500,700,1000,1500,2000,3000,5000,7000,10000,15000,20000,30000,60000]), -1)::smallint
$$;

CREATE FUNCTION dispatch_endpoint_stat_count() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO "EndpointStat" ("endpointId", bin, "latencyBucket", succeeded, failed)
  SELECT n."endpointId", date_bin('5 minutes', n."createdAt", TIMESTAMP '2000-01-01'),
         dispatch_endpoint_stat_bucket(n."durationMs"),
         count(*) FILTER (WHERE n.status = 'SUCCEEDED'), count(*) FILTER (WHERE n.status = 'FAILED')
  FROM finished_new n JOIN finished_old o ON o.id = n.id
  WHERE o.status = 'SENDING' AND n.status <> 'SENDING'
  GROUP BY 1, 2, 3
  ORDER BY 1, 2, 3
  ON CONFLICT ("endpointId", bin, "latencyBucket") DO UPDATE
    SET succeeded = "EndpointStat".succeeded + EXCLUDED.succeeded, failed = "EndpointStat".failed + EXCLUDED.failed;
  RETURN NULL;
END
$$;

CREATE TRIGGER "Attempt_endpoint_stat" AFTER UPDATE ON "Attempt"
  REFERENCING OLD TABLE AS finished_old NEW TABLE AS finished_new
  FOR EACH STATEMENT EXECUTE FUNCTION dispatch_endpoint_stat_count();

-- What was recorded before this migration.
INSERT INTO "EndpointStat" ("endpointId", bin, "latencyBucket", succeeded, failed)
SELECT "endpointId", date_bin('5 minutes', "createdAt", TIMESTAMP '2000-01-01'), dispatch_endpoint_stat_bucket("durationMs"),
       count(*) FILTER (WHERE status = 'SUCCEEDED'), count(*) FILTER (WHERE status = 'FAILED')
FROM "Attempt" WHERE status <> 'SENDING'
GROUP BY 1, 2, 3;

-- endpointHealthChanged: an endpoint's health (HEALTHY / FAILING / DISABLED)
-- changes when it is disabled or enabled, or its run of failures starts or
-- ends. The live feed hears of it from PostgreSQL itself, on commit, from
-- every path that changes those columns.
CREATE FUNCTION dispatch_endpoint_health_notify() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pg_notify('dispatch_live', json_build_object('kind', 'endpoint', 'appId', NEW."appId",
    'recipientId', NEW."recipientId", 'endpointId', NEW.id)::text);
  RETURN NULL;
END
$$;

CREATE TRIGGER "Endpoint_health_changed" AFTER UPDATE OF disabled, "failingSince" ON "Endpoint"
  FOR EACH ROW
  WHEN (OLD.disabled IS DISTINCT FROM NEW.disabled OR (OLD."failingSince" IS NULL) <> (NEW."failingSince" IS NULL))
  EXECUTE FUNCTION dispatch_endpoint_health_notify();
