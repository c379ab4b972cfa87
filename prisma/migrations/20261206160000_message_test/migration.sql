-- A test event sent from the portal (sendTestMessage). A constant default: no table rewrite.
ALTER TABLE "Message" ADD COLUMN "test" BOOLEAN NOT NULL DEFAULT false;
