#!/usr/bin/env bash
# plan → draw → tasks → results → alert on `concord dev`, with grpcurl only.
# Usage: deploy/demo/joint-inspection.sh [PKI_DIR=.concord-dev/pki] [BASE_PORT=7001]
# Run it on a fresh dev cluster (`concord dev --fresh`): it expects revisions as there.
set -euo pipefail
P=${1:-.concord-dev/pki}; BASE=${2:-7001}; H=127.0.0.1
P1=$BASE; P2=$((BASE+1)); P3=$((BASE+2)); P4=$((BASE+3))
c() { echo "-cacert $P/ca.pem -cert $P/$1-client-app.pem -key $P/$1-client-app.key"; }
SAMR=$(c SAMR); TRANS=$(c TRANS); JUST=$(c JUST); NDRC=$(c NDRC)
ADMIN="-cacert $P/ca.pem -cert $P/BIGDATA-admin-operator.pem -key $P/BIGDATA-admin-operator.key"
g() { grpcurl "$@"; }
NOW=$(date +%s000)
ITEM=$(g $SAMR -d '{"request_id":"i1","content":{"name":"成品油流通","field":"refined_oil","lead":{"department":"SAMR","duty":"质量监管","legal_basis":"《产品质量法》"},"cooperating":[{"department":"TRANS","duty":"运输监管","legal_basis":"《道路运输条例》"}],"targets":"加油站","level":"CITY","methods":["DOUBLE_RANDOM"],"public":true}}' $H:$P1 concord.item.v1.ItemService/CreateItem | python3 -c "import json,sys;print(json.load(sys.stdin)['item']['id'])")
g $SAMR -d '{"id":"'$ITEM'"}' $H:$P1 concord.item.v1.ItemService/SubmitForReview >/dev/null
g $JUST -d '{"id":"'$ITEM'","approve":true}' $H:$P3 concord.item.v1.ItemService/ReviewItem >/dev/null
g $SAMR -d '{"id":"'$ITEM'"}' $H:$P1 concord.item.v1.ItemService/PublishItem >/dev/null
echo "published $ITEM"
for U in 9114030254PNMK4N6B 91140300142GAP0U9Y 91140311729YDWUJ0U 91140302241YEF1U17; do
  g $SAMR -d '{"request_id":"reg-'$U'","entity":{"uscc":"'$U'","name":"主体'$U'","district":"城区","industry":"refined_oil","licence":"ACTIVE"}}' $H:$P1 concord.entity.v1.EntityService/RegisterEntity >/dev/null
  g $TRANS -d '{"request_id":"v-'$U'","record":{"uscc":"'$U'","kind":"VIOLATION","severity":"SERIOUS","description":"超载","legal_basis":"《道路运输条例》","effective_ms":"'$NOW'"}}' $H:$P2 concord.credit.v1.CreditService/RecordCredit >/dev/null
done
echo "4 entities registered, each tier C after a serious violation"
for D in SAMR TRANS; do for N in 1 2; do
  A=$([ $D = SAMR ] && echo $P1 || echo $P2); X=$(c $D)
  g $X -d '{"request_id":"'$D$N'","inspector":{"id":"'$D'-'$N'","name":"检查员'$N'","certification":"执法证","active":true}}' $H:$A concord.inspection.v1.InspectionService/PutInspector >/dev/null
done; done
echo "inspectors: SAMR-1 SAMR-2 TRANS-1 TRANS-2"
echo; echo '$ grpcurl $SAMR … InspectionService/CreatePlan'
PLAN=$(g $SAMR -d '{"request_id":"p1","plan":{"name":"成品油联合抽查","participants":["SAMR","TRANS"],"items":["'$ITEM'"],"districts":["城区"],"period_start_ms":"'$NOW'","period_end_ms":"'$((NOW+2592000000))'","ratio_overrides":[{"tier":"C","ratio_bp":5000}],"inspectors_per_department":1}}' $H:$P1 concord.inspection.v1.InspectionService/CreatePlan | python3 -c "import json,sys;p=json.load(sys.stdin)['plan'];print(p['id'])")
echo "$PLAN"
echo; echo '$ grpcurl $SAMR … InspectionService/DrawPlan'
g $SAMR -d '{"request_id":"d1","plan_id":"'$PLAN'"}' $H:$P1 concord.inspection.v1.InspectionService/DrawPlan > /tmp/concord-draw.json
python3 - <<'PY'
import json
d=json.load(open('/tmp/concord-draw.json'))
dr=d['draw']
print('seed',dr['seed'][:16]+'…','chain head',dr['chainHash'][:12]+'…','policy v',dr['policyVersion'],'tiers',[(t['tier'],t.get('population',0),t.get('ratioBp',0),t.get('drawn',0)) for t in dr['tiers'] if t.get('population')])
print('entities',dr['entities'])
for t in d['tasks']:
    print(t['id'],t['uscc'],[(p['department'],p['items'],p['inspectors']) for p in t['parts']])
json.dump(d['tasks'][0],open('/tmp/concord-task0.json','w'))
PY
echo; echo '$ grpcurl $JUST … InspectionService/VerifyDraw   (at another department'"'"'s node)'
g $JUST -d '{"plan_id":"'$PLAN'"}' $H:$P3 concord.inspection.v1.InspectionService/VerifyDraw | python3 -c "import json,sys;d=json.load(sys.stdin);print('verified',d.get('verified',False),d.get('problems',[]))"
TASK=$(python3 -c "import json;print(json.load(open('/tmp/concord-task0.json'))['id'])")
U=$(python3 -c "import json;print(json.load(open('/tmp/concord-task0.json'))['uscc'])")
insp() { python3 -c "import json;t=json.load(open('/tmp/concord-task0.json'));print(json.dumps([p for p in t['parts'] if p['department']=='$1'][0]['inspectors']))"; }
echo; echo '$ grpcurl $TRANS / $SAMR … InspectionService/SubmitResult'
for D in TRANS SAMR; do A=$([ $D = SAMR ] && echo $P1 || echo $P2); X=$(c $D)
  g $X -d '{"request_id":"r-'$D'","task_id":"'$TASK'","result":{"outcome":"COMPLIANT","findings":"未发现问题","evidence":["'$(echo -n 照片 | sha256sum | cut -c1-64)'"],"inspectors":'$(insp $D)',"public":true}}' $H:$A concord.inspection.v1.InspectionService/SubmitResult | python3 -c "import json,sys;d=json.load(sys.stdin);print('$D filed →',d['task']['status'],'alert' if d.get('alert') else '')"
done
echo; echo '$ grpcurl $SAMR … (a different result after completion)'
g $SAMR -d '{"task_id":"'$TASK'","result":{"outcome":"NON_COMPLIANT","findings":"补充","inspectors":'$(insp SAMR)'}}' $H:$P1 concord.inspection.v1.InspectionService/SubmitResult 2>&1 | tail -2 || true
echo; echo '$ grpcurl $ADMIN … ClusterService/SetOverInspectionRule (3 inspections, 2 departments, 30 days)'
g $ADMIN -d '{"request_id":"rule1","rule":{"min_inspections":3,"min_departments":2,"window_days":30}}' $H:$P1 concord.cluster.v1.ClusterService/SetOverInspectionRule | python3 -c "import json,sys;print(json.load(sys.stdin)['rule'])"
echo; echo '$ grpcurl $JUST … RecordInspection ; grpcurl $NDRC … RecordInspection'
g $JUST -d '{"request_id":"a1","uscc":"'$U'","note":"法治督察"}' $H:$P3 concord.inspection.v1.InspectionService/RecordInspection | python3 -c "import json,sys;d=json.load(sys.stdin);print('JUST recorded; alert:',d.get('alert'))"
g $NDRC -d '{"request_id":"a2","uscc":"'$U'","note":"价格检查"}' $H:$P4 concord.inspection.v1.InspectionService/RecordInspection | python3 -c "import json,sys;d=json.load(sys.stdin);a=d['alert'];print('NDRC recorded; alert:',a['id'],a['uscc'],'inspections',a['inspections'],'departments',a['departments'],'sources',a['sources'])"
echo; echo '$ grpcurl $X … InspectionService/ListInbox  (each department at its own node)'
for D in SAMR TRANS JUST NDRC; do A=$(case $D in SAMR) echo $P1;; TRANS) echo $P2;; JUST) echo $P3;; NDRC) echo $P4;; esac); X=$(c $D)
  g $X -d '{"read":{"consistency":"LINEARIZABLE"}}' $H:$A concord.inspection.v1.InspectionService/ListInbox | python3 -c "import json,sys;d=json.load(sys.stdin);print('$D inbox:',[a['id'] for a in d.get('alerts',[])])"
done
