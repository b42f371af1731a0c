"""Import every model so ``Base.metadata`` knows all tables (for Alembic and tests)."""

from __future__ import annotations

from dianfei.approvals import models as approval_models
from dianfei.audit import models as audit_models
from dianfei.billing import models as billing_models
from dianfei.collections import fieldwork_models, ops_models, ticket_models, worklist_models
from dianfei.collections import models as collections_models
from dianfei.customers import models as customer_models
from dianfei.db.base import Base
from dianfei.events import models as event_models
from dianfei.jobs import models as job_models
from dianfei.ledger import models as ledger_models
from dianfei.metering import models as metering_models
from dianfei.metering.vee import models as vee_models
from dianfei.notify import models as notify_models
from dianfei.payments import models as payments_models
from dianfei.payments import statement_models
from dianfei.reporting import models as reporting_models
from dianfei.risk import insight_models
from dianfei.risk import models as risk_models
from dianfei.security import models as security_models
from dianfei.security import otp_models

__all__ = [
           "Base",
           "approval_models",
           "audit_models",
           "billing_models",
           "collections_models",
           "customer_models",
           "event_models",
           "fieldwork_models",
           "insight_models",
           "job_models",
           "ledger_models",
           "metering_models",
           "notify_models",
           "ops_models",
           "otp_models",
           "payments_models",
           "reporting_models",
           "risk_models",
           "security_models",
           "statement_models",
           "ticket_models",
           "vee_models",
           "worklist_models",
]
