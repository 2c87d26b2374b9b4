-- Why a ticket is an escalation (critical asset, change control, the plan's thresholds or rules,
-- an escalation report): shown on the ticket.
ALTER TABLE tickets ADD COLUMN escalation_reason TEXT;
