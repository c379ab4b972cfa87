-- An attempt's recipient, message and endpoint are its delivery's, and a
-- delivery's recipient is its message's: the keys to the delivery (and to the
-- message) cover them, cascades included. Checking the extra keys cost a
-- fifth of PostgreSQL's time per delivery and locked the shared rows of
-- recipients, messages and endpoints from every attempt written at once.
ALTER TABLE "Attempt" DROP CONSTRAINT "Attempt_recipientId_fkey";
ALTER TABLE "Attempt" DROP CONSTRAINT "Attempt_messageId_fkey";
ALTER TABLE "Attempt" DROP CONSTRAINT "Attempt_endpointId_fkey";
ALTER TABLE "Delivery" DROP CONSTRAINT "Delivery_recipientId_fkey";
