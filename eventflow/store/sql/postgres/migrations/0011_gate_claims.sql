-- 0011: who is checking a gate and until when: each worker's checker claims the gates it
-- checks (`running`, `claimed_by` its worker, `claim_until` a lease it renews) with
-- `FOR UPDATE SKIP LOCKED`, so two workers never run the same gate's checks at once and a
-- dead worker's claim is taken over when it expires.

ALTER TABLE check_gates ADD COLUMN claimed_by TEXT COLLATE "C";
ALTER TABLE check_gates ADD COLUMN claim_until TEXT COLLATE "C";
