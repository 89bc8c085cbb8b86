#!/usr/bin/env python3
"""grpcurl end to end against a running `concord dev` cluster, over mutual TLS:
`list` and `describe` of every public service, one successful call of every public
RPC, and one refused call (bad input, or the wrong department) per service showing
its error. Fails if any public RPC went uncalled.

Usage: every_rpc.py PKI_DIR BASE_PORT
"""

import json
import subprocess
import sys
import time

PKI, BASE = sys.argv[1], int(sys.argv[2])
NODES = ["SAMR", "TRANS", "JUST", "NDRC", "PSB", "APPROVAL"]
HOST = "127.0.0.1"
called = set()


def addr(dept):
    return f"{HOST}:{BASE + NODES.index(dept)}"


def creds(who):
    name = "BIGDATA-admin-operator" if who == "ADMIN" else f"{who}-client-app"
    return ["-cacert", f"{PKI}/ca.pem", "-cert", f"{PKI}/{name}.pem", "-key", f"{PKI}/{name}.key"]


def grpcurl(who, at, method, body=None, extra=()):
    args = ["grpcurl", *creds(who), *extra]
    if body is not None:
        args += ["-d", json.dumps(body, ensure_ascii=False)]
    args += [addr(at), method]
    return subprocess.run(args, capture_output=True, text=True)


def call(who, method, body=None, at=None, stream=False):
    """A call that must succeed; returns the (last) response."""
    at = at or (who if who != "ADMIN" else "SAMR")
    full = method if method.startswith("concord.") else f"concord.{method}"
    r = grpcurl(who, at, full, body)
    if r.returncode != 0:
        sys.exit(f"FAIL {full} as {who} at {at}: " + " | ".join(r.stderr.split("\n")))
    service, rpc = full.rsplit("/", 1)
    called.add(f"{service}/{rpc}")
    print(f"ok   {service.split('.')[1]}/{rpc} ({who})")
    out = r.stdout.strip()
    if not out:
        return {}
    if stream:
        return out
    return json.loads(out)


def refused(who, method, body, code, at=None):
    at = at or (who if who != "ADMIN" else "SAMR")
    full = f"concord.{method}"
    r = grpcurl(who, at, full, body)
    if r.returncode == 0 or f"Code: {code}" not in r.stderr:
        sys.exit(f"FAIL {full}: expected {code}, got rc {r.returncode}: {r.stdout}{r.stderr}")
    msg = next((l.strip() for l in r.stderr.splitlines() if l.strip().startswith("Message:")), "")
    print(f"ok   {method.split('/')[0].split('.')[0]}/{method.rsplit('/', 1)[1]} refused: {code} {msg}")


def leader():
    s = call("ADMIN", "cluster.v1.ClusterService/Status")
    return NODES[int(s["leaderId"]) - 1]


def h(text):
    import hashlib
    return hashlib.sha256(text.encode()).hexdigest()


def content(lead, name, coop=("TRANS",)):
    return {"name": name, "field": "refined_oil",
            "lead": {"department": lead, "duty": "质量监管", "legal_basis": "《产品质量法》"},
            "cooperating": [{"department": d, "duty": "协同监管", "legal_basis": "《道路运输条例》"} for d in coop],
            "targets": "加油站", "level": "CITY", "methods": ["DOUBLE_RANDOM"], "public": True}


def main():
    # list and describe: what an integration engineer sees first.
    r = subprocess.run(["grpcurl", *creds("SAMR"), addr("SAMR"), "list"], capture_output=True, text=True)
    services = [s for s in r.stdout.split() if s.startswith("concord.") and not s.startswith("concord.raft.")]
    if r.returncode != 0 or len(services) < 8:
        sys.exit(f"FAIL list: {r.stdout}{r.stderr}")
    public = set()
    for s in services:
        d = subprocess.run(["grpcurl", *creds("SAMR"), addr("SAMR"), "describe", s], capture_output=True, text=True)
        if d.returncode != 0 or "rpc " not in d.stdout:
            sys.exit(f"FAIL describe {s}: {d.stderr}")
        m = subprocess.run(["grpcurl", *creds("SAMR"), addr("SAMR"), "list", s], capture_output=True, text=True)
        public |= {x.replace(f"{s}.", f"{s}/") for x in m.stdout.split()}
    print(f"ok   list: {len(services)} public services; describe each; {len(public)} RPCs")
    now = int(time.time() * 1000)

    # Cluster.
    call("ADMIN", "cluster.v1.ClusterService/Status", at="TRANS")
    call("SAMR", "cluster.v1.ClusterService/ListDepartments")
    call("SAMR", "cluster.v1.ClusterService/GetDepartment", {"code": "PSB"})
    L = leader()
    call("ADMIN", "cluster.v1.ClusterService/RegisterDepartment", {"request_id": "reg-tax", "department": {
        "code": "TAX", "name": "国家税务总局阳泉市税务局", "name_en": "Taxation Bureau", "kind": "ADMINISTRATIVE"}}, at=L)
    districts = call("SAMR", "entity.v1.EntityService/ListDistricts")["districts"]
    call("ADMIN", "cluster.v1.ClusterService/SetDistricts", {"request_id": "districts", "districts": districts}, at=L)
    call("ADMIN", "cluster.v1.ClusterService/SetOverInspectionRule",
         {"request_id": "rule", "rule": {"min_inspections": 3, "min_departments": 2, "window_days": 30}}, at=L)
    hours = {"accept": 72, "assign": 120, "handle": 360, "feedback": 168, "reroute": 72, "remind_before": 24}
    call("ADMIN", "cluster.v1.ClusterService/SetCaseDeadlines",
         {"request_id": "deadlines", "policy": {"clue": hours, "risk_warning": hours}}, at=L)
    status = call("ADMIN", "cluster.v1.ClusterService/Status", at=L)
    psb = next(m for m in status["members"] if m["department"] == "PSB")
    call("ADMIN", "cluster.v1.ClusterService/AddLearner",
         {"node_id": psb["nodeId"], "addr": psb["addr"], "department": "PSB", "blocking": False}, at=L)
    voters = [int(m["nodeId"]) for m in status["members"] if m.get("voter")]
    call("ADMIN", "cluster.v1.ClusterService/ChangeMembership", {"voters": voters, "retain": True}, at=L)
    call("ADMIN", "cluster.v1.ClusterService/TriggerSnapshot", at="JUST")
    call("ADMIN", "cluster.v1.ClusterService/Backup", at="TRANS", stream=True)
    refused("SAMR", "cluster.v1.ClusterService/GetDepartment", {"code": "tax!"}, "InvalidArgument")

    # Items.
    item = call("SAMR", "item.v1.ItemService/CreateItem", {"request_id": "i1", "content": content("SAMR", "成品油流通")})["item"]["id"]
    call("SAMR", "item.v1.ItemService/UpdateDraft", {"request_id": "i1u", "id": item, "content": content("SAMR", "成品油流通监管")})
    call("SAMR", "item.v1.ItemService/SubmitForReview", {"request_id": "i1s", "id": item})
    call("JUST", "item.v1.ItemService/ReviewItem", {"request_id": "i1r", "id": item, "approve": True, "opinion": "合法"})
    call("SAMR", "item.v1.ItemService/PublishItem", {"request_id": "i1p", "id": item})
    call("TRANS", "item.v1.ItemService/GetItem", {"id": item, "read": {"consistency": "LINEARIZABLE"}})
    call("NDRC", "item.v1.ItemService/ListItems", {})
    call("SAMR", "item.v1.ItemService/ReviseItem", {"request_id": "i1v", "id": item, "cause": "AMEND",
         "change_note": "依新修订条例调整", "content": content("SAMR", "成品油流通监管（修订）")})
    call("SAMR", "item.v1.ItemService/ItemHistory", {"id": item})
    old = call("SAMR", "item.v1.ItemService/CreateItem", {"request_id": "i2", "content": content("SAMR", "旧事项")})["item"]["id"]
    call("SAMR", "item.v1.ItemService/SubmitForReview", {"request_id": "i2s", "id": old})
    call("JUST", "item.v1.ItemService/ReviewItem", {"request_id": "i2r", "id": old, "approve": True})
    call("SAMR", "item.v1.ItemService/PublishItem", {"request_id": "i2p", "id": old})
    call("SAMR", "item.v1.ItemService/AbolishItem", {"request_id": "i2a", "id": old, "reason": "职责调整"})
    refused("SAMR", "item.v1.ItemService/CreateItem", {"content": content("SAMR", "")}, "InvalidArgument")

    # Sharing.
    call("SAMR", "sharing.v1.SharingService/PutSharingRule", {"request_id": "s1", "rule": {
        "id": "drafts-to-ndrc", "class": "RECORD_CLASS_ITEM", "provider": "SAMR", "readers": ["NDRC"],
        "purpose": "信用评价", "frequency": "ON_CHANGE", "confidentiality": "INTERNAL", "legal_basis": "《数据共享办法》"}})
    call("NDRC", "sharing.v1.SharingService/ListSharingRules")
    call("SAMR", "sharing.v1.SharingService/DeleteSharingRule", {"request_id": "s2", "class": "RECORD_CLASS_ITEM", "id": "drafts-to-ndrc"})
    refused("SAMR", "sharing.v1.SharingService/PutSharingRule", {}, "InvalidArgument")

    # Entities and credit.
    uscc = "91140311729YDWUJ0U"
    call("SAMR", "entity.v1.EntityService/RegisterEntity", {"request_id": "e1", "entity": {
        "uscc": uscc, "name": "郊区成品油经营有限公司", "district": "郊区", "industry": "refined_oil", "licence": "ACTIVE"}})
    call("TRANS", "entity.v1.EntityService/GetEntity", {"uscc": uscc})
    call("JUST", "entity.v1.EntityService/ListEntities", {})
    listing = call("NDRC", "entity.v1.EntityService/PutOnList", {"request_id": "l1", "listing": {
        "list": "PUNISHMENT", "uscc": uscc, "reason": "严重违法失信", "legal_basis": "《失信联合惩戒备忘录》"}})["listing"]["id"]
    call("SAMR", "entity.v1.EntityService/ListListings", {"uscc": uscc})
    call("NDRC", "entity.v1.EntityService/RemoveFromList", {"request_id": "l2", "id": listing, "reason": "信用修复"})
    refused("SAMR", "entity.v1.EntityService/RegisterEntity", {"entity": {
        "uscc": "91140311729YDWUJ0X", "name": "错码主体", "district": "郊区", "industry": "refined_oil", "licence": "ACTIVE"}}, "InvalidArgument")
    record = call("TRANS", "credit.v1.CreditService/RecordCredit", {"request_id": "c1", "record": {
        "uscc": uscc, "kind": "VIOLATION", "severity": "SERIOUS", "description": "超载",
        "legal_basis": "《道路运输条例》", "effective_ms": str(now)}})["record"]
    call("SAMR", "credit.v1.CreditService/GetCreditRecord", {"id": record["id"]})
    call("SAMR", "credit.v1.CreditService/ListCreditRecords", {"uscc": uscc})
    call("TRANS", "credit.v1.CreditService/CorrectCredit", {"request_id": "c2", "id": record["id"], "reason": "更正描述", "record": {
        "uscc": uscc, "kind": "VIOLATION", "severity": "SERIOUS", "description": "超限超载",
        "legal_basis": "《道路运输条例》", "effective_ms": str(now)}})
    call("TRANS", "credit.v1.CreditService/CreditRecordHistory", {"id": record["id"]})
    call("JUST", "credit.v1.CreditService/GetTier", {"uscc": uscc})
    refused("SAMR", "credit.v1.CreditService/GetTier", {"uscc": "123"}, "InvalidArgument")

    # Inspections.
    for d in ("SAMR", "TRANS"):
        call(d, "inspection.v1.InspectionService/PutInspector", {"request_id": f"p-{d}", "inspector": {
            "id": f"{d}-1", "name": "检查员", "certification": "执法证", "active": True}})
    call("SAMR", "inspection.v1.InspectionService/ListInspectors", {"department": "SAMR"})
    plan = call("SAMR", "inspection.v1.InspectionService/CreatePlan", {"request_id": "plan", "plan": {
        "name": "成品油联合抽查", "participants": ["SAMR", "TRANS"], "items": [item], "districts": ["郊区"],
        "period_start_ms": str(now), "period_end_ms": str(now + 30 * 86_400_000),
        "ratio_overrides": [{"tier": "C", "ratio_bp": 6000}], "inspectors_per_department": 1}})["plan"]["id"]
    call("TRANS", "inspection.v1.InspectionService/GetPlan", {"id": plan})
    call("SAMR", "inspection.v1.InspectionService/DrawPlan", {"request_id": "draw", "plan_id": plan})
    call("SAMR", "inspection.v1.InspectionService/GetDraw", {"plan_id": plan})
    call("JUST", "inspection.v1.InspectionService/VerifyDraw", {"plan_id": plan})
    tasks = call("SAMR", "inspection.v1.InspectionService/ListTasks", {"plan_id": plan})["tasks"]
    task = call("TRANS", "inspection.v1.InspectionService/GetTask", {"id": tasks[0]["id"]})["task"]
    for part in task["parts"]:
        d = part["department"]
        call(d, "inspection.v1.InspectionService/SubmitResult", {"request_id": f"r-{d}", "task_id": task["id"], "result": {
            "outcome": "COMPLIANT", "findings": "未发现问题", "evidence": [h("照片")], "inspectors": part["inspectors"], "public": True}})
    call("NDRC", "inspection.v1.InspectionService/RecordInspection", {"request_id": "ri", "uscc": uscc, "note": "价格检查"})
    call("JUST", "inspection.v1.InspectionService/RecentResults", {"uscc": uscc})
    call("SAMR", "inspection.v1.InspectionService/ListInbox", {})
    call("NDRC", "inspection.v1.InspectionService/ListPublicResults", {"plan_id": plan})
    refused("SAMR", "inspection.v1.InspectionService/GetPlan", {"id": "plan 1"}, "InvalidArgument")

    # Tier policy last: a new policy re-tiers the directory.
    policy = call("NDRC", "credit.v1.CreditService/GetTierPolicy", {})["policy"]
    policy["base_score"] = "85"
    for k in ("version", "department", "revision", "baseScore"):
        policy.pop(k, None)
    call("NDRC", "credit.v1.CreditService/PutTierPolicy", {"request_id": "policy", "policy": policy})

    # Cases: the loop, every step.
    case = call("SAMR", "case.v1.CaseService/PushCase", {"request_id": "k1", "case": {
        "kind": "CLUE", "source": "HOTLINE_12345", "source_ref": "12345-0042", "uscc": uscc,
        "title": "加油站违规储存危化品", "description": "群众反映夜间违规卸油", "evidence": [h("录音")],
        "to": ["TRANS"], "priority": "HIGH"}})["cases"][0]
    cid = case["id"]
    call("TRANS", "case.v1.CaseService/GetCase", {"id": cid})
    call("SAMR", "case.v1.CaseService/GetHandoff", {"handoff": case["handoff"]})
    call("TRANS", "case.v1.CaseService/ListInbox", {})
    call("TRANS", "case.v1.CaseService/AcknowledgeCase", {"id": cid})
    call("TRANS", "case.v1.CaseService/RejectCase", {"id": cid, "reason": "不属本部门职责"})
    call("SAMR", "case.v1.CaseService/RerouteCase", {"id": cid, "to": "NDRC", "reason": "价格违法"})
    call("NDRC", "case.v1.CaseService/RejectCase", {"id": cid, "reason": "非价格问题"})
    call("SAMR", "case.v1.CaseService/EscalateCase", {"id": cid, "reason": "职责争议"})
    call("JUST", "case.v1.CaseService/AssignCase", {"id": cid, "to": "TRANS", "reason": "依规定属交通运输"})
    transfer = call("TRANS", "case.v1.CaseService/TransferToJudicial", {"request_id": "tr", "id": cid, "to": "PSB",
        "reason": "涉嫌非法储存危险物质罪", "documents": [
            {"kind": "TRANSFER_LETTER", "title": "移送书", "sha256": h("移送书")},
            {"kind": "INVESTIGATION_REPORT", "title": "调查报告", "sha256": h("调查报告")},
            {"kind": "ITEM_LIST", "title": "涉案物品清单", "sha256": h("清单")}]})["case"]["id"]
    call("PSB", "case.v1.CaseService/AcceptCase", {"id": transfer})
    call("PSB", "case.v1.CaseService/RequestAssistance", {"request_id": "as", "id": transfer,
         "assistance": "APPRAISAL", "description": "请出具危化品鉴定意见"})
    resolution = {"outcome": "责令改正", "measures": "立案查处", "penalty_ref": "阳交罚〔2026〕12号"}
    call("TRANS", "case.v1.CaseService/ResolveCase", {"id": cid, "resolution": resolution})
    call("SAMR", "case.v1.CaseService/ReturnForRework", {"id": cid, "reason": "整改不到位"})
    call("TRANS", "case.v1.CaseService/ResolveCase", {"id": cid, "resolution": resolution})
    call("SAMR", "case.v1.CaseService/ConfirmFeedback", {"id": cid, "reason": "确认办结"})
    lic = call("APPROVAL", "case.v1.CaseService/RecordLicensingDecision", {"request_id": "lic", "decision": {
        "number": "阳审批许字〔2026〕118号", "uscc": uscc, "action": "GRANT", "matter": "成品油零售经营许可",
        "items": [item], "document": h("许可决定书")}})["decision"]["id"]
    call("TRANS", "case.v1.CaseService/GetLicensingDecision", {"id": lic})
    call("SAMR", "case.v1.CaseService/ListLicensingDecisions", {"uscc": uscc})
    refused("TRANS", "case.v1.CaseService/TransferToJudicial", {"id": cid, "to": "PSB", "reason": "x"}, "InvalidArgument")
    refused("SAMR", "case.v1.CaseService/AcceptCase", {"id": transfer}, "NotFound")

    # Audit, after everything above, and the watch of it all.
    call("ADMIN", "cluster.v1.ClusterService/AuditHead", at="NDRC")
    call("ADMIN", "cluster.v1.ClusterService/VerifyAudit", at="JUST")
    call("ADMIN", "cluster.v1.ClusterService/ListAudit", {"target": cid})
    r = grpcurl("SAMR", "SAMR", "concord.watch.v1.WatchService/Watch", {"start_revision": "1"}, extra=("-max-time", "2"))
    if '"events"' not in r.stdout:
        sys.exit(f"FAIL Watch: {r.stdout[:300]}{r.stderr}")
    called.add("concord.watch.v1.WatchService/Watch")
    print("ok   watch.v1/Watch (SAMR): replayed events from revision 1")
    refused("SAMR", "watch.v1.WatchService/Watch", {"kinds": [99]}, "InvalidArgument")

    missing = sorted(public - called)
    if missing:
        sys.exit(f"FAIL: public RPCs not called: {missing}")
    print(f"ok   every public RPC called: {len(called)} of {len(public)}")


if __name__ == "__main__":
    main()
