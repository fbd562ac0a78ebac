-- 0013: who is checking a gate and until when: the checker claims the gates it checks
-- (`running`, `claimed_by` its worker, `claim_until` a lease it renews), so two checkers
-- never run the same gate's checks at once and a dead one's claim is taken over.

ALTER TABLE check_gates ADD COLUMN claimed_by TEXT;
ALTER TABLE check_gates ADD COLUMN claim_until TEXT;
