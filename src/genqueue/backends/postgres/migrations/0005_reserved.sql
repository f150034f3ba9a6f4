-- 0005: reserved for the dead letter storage branch (its 0005 replaces this file when
-- both are merged; numbers must run without gaps).
SELECT 1;
