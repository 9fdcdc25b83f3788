"""Condition types and reasons: what `kubectl describe tj`, Events and alerts key on.

Named once here, because users' scripts and the chart's alerts match on them.
"""

# Condition types (one per phase, plus observations).
PENDING, RUNNING, SUCCEEDED, FAILED, SUSPENDED, BUDGET_EXCEEDED = (
    "Pending", "Running", "Succeeded", "Failed", "Suspended", "BudgetExceeded")
PHASE_CONDITIONS = (PENDING, RUNNING, SUCCEEDED, FAILED, SUSPENDED, BUDGET_EXCEEDED)
PLANNED = "Planned"
SIZED_DOWN = "SizedDown"
BUDGET_AT_RISK = "BudgetAtRisk"  # the projected cost passes budget.maxCostUSD

# Reasons a job cannot run: final, nothing the cluster does later fixes them.
INVALID_SPEC = "InvalidSpec"  # the operator cannot read the spec
PLANNING_FAILED = "PlanningFailed"  # e.g. an unknown GPU type
SHARED_CLAIM_MISSING = "SharedClaimMissing"  # a job across pods without checkpoint.pvc
KUBERAY_MISSING = "KubeRayMissing"  # a multi-pod plan, and KubeRay's CRDs are not installed

# Reasons a job waits: it launches as soon as what it names exists (budget.maxDuration bounds it).
WAITING_FOR_CLAIM = "WaitingForClaim"
WAITING_FOR_SECRET = "WaitingForSecret"
WAITING_FOR_CONFIG_MAP = "WaitingForConfigMap"

# Reasons of the phases.
LAUNCHER_CREATED = "LauncherCreated"
QUEUED = "Queued"
WAITING_FOR_PODS = "WaitingForPods"
TRAINER_RUNNING = "TrainerRunning"
TRAINING_SUCCEEDED = "TrainingSucceeded"
BACKOFF_LIMIT_EXCEEDED = "BackoffLimitExceeded"
COST_LIMIT_REACHED = "CostLimitReached"
PROJECTED_COST_OVERRUN = "ProjectedCostOverrun"  # stopped before spending it (onProjectedOverrun: stop)
PROJECTED_WITHIN_BUDGET = "ProjectedWithinBudget"
DEADLINE_EXCEEDED = "DeadlineExceeded"
SUSPENDED_BY_SPEC = "Suspended"
