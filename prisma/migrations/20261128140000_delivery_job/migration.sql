-- The delivery queue moves from pg-boss into a table of Dispatch's own.

-- CreateTable
CREATE TABLE "DeliveryJob" (
    "id" BIGSERIAL NOT NULL,
    "deliveryId" TEXT NOT NULL,
    "endpointId" TEXT NOT NULL,
    "trigger" "AttemptTrigger" NOT NULL DEFAULT 'SCHEDULED',
    "try" INTEGER,
    "runAt" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "leaseUntil" TIMESTAMP(3),
    "runs" INTEGER NOT NULL DEFAULT 0,
    "lastError" TEXT,

    CONSTRAINT "DeliveryJob_pkey" PRIMARY KEY ("id")
);

-- CreateIndex
CREATE INDEX "DeliveryJob_leaseUntil_runAt_idx" ON "DeliveryJob"("leaseUntil", "runAt");

-- Tries still queued in pg-boss (an existing installation) move over, so an
-- upgrade loses none; a job that was running is queued again (its worker
-- closes the attempt it may have left as worker_lost when it runs).
DO $$
BEGIN
  IF to_regclass('pgboss.job') IS NOT NULL THEN
    INSERT INTO "DeliveryJob" ("deliveryId", "endpointId", "trigger", "try", "runAt", "runs")
    SELECT j.data->>'deliveryId', d."endpointId", (j.data->>'trigger')::"AttemptTrigger", (j.data->>'try')::int,
           j.start_after::timestamp(3), CASE WHEN j.state = 'active' THEN 1 ELSE 0 END
    FROM pgboss.job j JOIN "Delivery" d ON d.id = j.data->>'deliveryId'
    WHERE j.name = 'dispatch-delivery' AND j.state IN ('created', 'retry', 'active');
    DELETE FROM pgboss.job WHERE name = 'dispatch-delivery' AND state IN ('created', 'retry', 'active');
  END IF;
END $$;
