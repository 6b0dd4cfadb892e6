DROP TRIGGER IF EXISTS deployment_audit_insert ON deployments;
DROP TRIGGER IF EXISTS deployment_audit_verify ON deployments;
DROP TRIGGER IF EXISTS deployment_audit_delete ON deployments;
DROP FUNCTION IF EXISTS deployment_audit_on_insert();
DROP FUNCTION IF EXISTS deployment_audit_on_verify();
DROP FUNCTION IF EXISTS deployment_audit_on_delete();
