-- Roll back version 4: forget the cold tier audit results (the audit itself needs nothing else).
DROP TABLE IF EXISTS lake_audits;
