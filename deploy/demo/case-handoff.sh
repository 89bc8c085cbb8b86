#!/usr/bin/env bash
# A case pushed by market regulation, disputed by transport, assigned by the justice
# bureau, resolved by transport and closed by market regulation — then its audit
# trail. grpcurl only, against `concord dev`.
# Usage: deploy/demo/case-handoff.sh [PKI_DIR=.concord-dev/pki] [BASE_PORT=7001]
set -euo pipefail
P=${1:-.concord-dev/pki}; BASE=${2:-7001}; H=127.0.0.1
SAMR_A=$H:$BASE; TRANS_A=$H:$((BASE+1)); JUST_A=$H:$((BASE+2))
c() { echo "-cacert $P/ca.pem -cert $P/$1-client-app.pem -key $P/$1-client-app.key"; }
SAMR=$(c SAMR); TRANS=$(c TRANS); JUST=$(c JUST)
ADMIN="-cacert $P/ca.pem -cert $P/BIGDATA-admin-operator.pem -key $P/BIGDATA-admin-operator.key"
show() { python3 -c "import json,sys;d=json.load(sys.stdin);c=d.get('case') or d['cases'][0];print('  ',c['id'],c['status'],'with',c['to'][0],'due',c.get('dueMs','—'))"; }
echo '$ grpcurl $SAMR … CaseService/PushCase (to TRANS)'
ID=$(grpcurl $SAMR -d '{"request_id":"push-1","case":{"kind":"CLUE","source":"HOTLINE_12345","source_ref":"12345-20261129-0042","uscc":"91140311729YDWUJ0U","title":"加油站违规储存危化品","description":"群众反映夜间违规卸油","evidence":["'$(echo -n 录音 | sha256sum | cut -c1-64)'"],"to":["TRANS"],"priority":"HIGH"}}' $SAMR_A concord.case.v1.CaseService/PushCase | python3 -c "import json,sys;c=json.load(sys.stdin)['cases'][0];print(c['id'])")
echo "   $ID PUSHED"
echo '$ grpcurl $TRANS … CaseService/ListInbox'
grpcurl $TRANS $TRANS_A concord.case.v1.CaseService/ListInbox | python3 -c "import json,sys;d=json.load(sys.stdin);[print('  ',c['id'],c['title'],c['status'],'due',c['dueMs']) for c in d.get('awaiting',[])]"
step() { local who=$1 addr=$2 rpc=$3 body=$4; echo "\$ grpcurl \$$who … CaseService/$rpc"; grpcurl $(c $who) -d "$body" $addr concord.case.v1.CaseService/$rpc | show; }
step TRANS $TRANS_A AcknowledgeCase '{"id":"'$ID'"}'
step TRANS $TRANS_A RejectCase '{"id":"'$ID'","reason":"属应急管理部门职责"}'
step SAMR $SAMR_A EscalateCase '{"id":"'$ID'","reason":"运输环节职责争议"}'
step JUST $JUST_A AssignCase '{"id":"'$ID'","to":"TRANS","reason":"依《道路危险货物运输管理规定》由交通运输部门处理"}'
h() { echo -n "$1" | sha256sum | cut -c1-64; }
echo '$ grpcurl $TRANS … CaseService/TransferToJudicial (to PSB, 行刑衔接)'
grpcurl $TRANS -d '{"request_id":"transfer-1","id":"'$ID'","to":"PSB","reason":"涉嫌非法储存危险物质罪","documents":[{"kind":"TRANSFER_LETTER","title":"涉嫌犯罪案件移送书","sha256":"'$(h 移送书)'"},{"kind":"INVESTIGATION_REPORT","title":"涉嫌犯罪案件情况的调查报告","sha256":"'$(h 调查报告)'"},{"kind":"ITEM_LIST","title":"涉案物品清单","sha256":"'$(h 清单)'"}]}' $TRANS_A concord.case.v1.CaseService/TransferToJudicial | python3 -c "import json,sys;c=json.load(sys.stdin)['case'];print('  ',c['id'],c['kind'],c['status'],'with',c['to'][0],'parent',c['parent'],'documents',len(c['documents']))"
step TRANS $TRANS_A ResolveCase '{"id":"'$ID'","resolution":{"outcome":"责令改正并罚款","measures":"立案调查，暂扣运输车辆","penalty_ref":"阳交罚〔2026〕12号"}}'
step SAMR $SAMR_A ConfirmFeedback '{"id":"'$ID'","reason":"确认办结"}'
echo '$ grpcurl $ADMIN … ClusterService/ListAudit {"target":"'$ID'"}'
grpcurl $ADMIN -d '{"target":"'$ID'"}' $JUST_A concord.cluster.v1.ClusterService/ListAudit | python3 -c "
import json,sys
for r in json.load(sys.stdin)['records']:
    print('  rev %4s %-22s %-6s %-7s %-20s basis=%s hash=%s…' % (r['revision'], r['kind'], r['actor'], r['principal'], r['outcome'], r.get('basis',''), r['hash'][:12]))"
echo '$ grpcurl $ADMIN … ClusterService/VerifyAudit'
grpcurl $ADMIN $JUST_A concord.cluster.v1.ClusterService/VerifyAudit | python3 -c "import json,sys;d=json.load(sys.stdin);print('   intact',d.get('intact',False),'checked',d['checked'],'head',d['head']['hash'][:16]+'…')"
