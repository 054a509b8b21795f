package console

import (
	"html/template"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/gpumeter/gpumeter/authority/billing"
)

// The console's languages; the first is the default.
var languages = []string{"en", "zh-CN"}

func knownLang(l string) bool { return l == "en" || l == "zh-CN" }

// lang is the viewer's language: the cookie, else the first of
// Accept-Language the console speaks, else English.
func (c *Console) lang(r *http.Request) string {
	if ck, err := r.Cookie(langCookie); err == nil && knownLang(ck.Value) {
		return ck.Value
	}
	for _, part := range strings.Split(r.Header.Get("Accept-Language"), ",") {
		tag, _, _ := strings.Cut(strings.TrimSpace(part), ";")
		switch tag = strings.ToLower(tag); {
		case strings.HasPrefix(tag, "zh"):
			return "zh-CN"
		case strings.HasPrefix(tag, "en"):
			return "en"
		}
	}
	return "en"
}

// messages holds each text in English and Simplified Chinese. A key
// without an entry shows itself (a test keeps the table complete).
var messages = map[string][2]string{
	"console":         {"gpumeter console", "gpumeter 控制台"},
	"sign in":         {"Sign in", "登录"},
	"sign out":        {"Sign out", "退出"},
	"token":           {"Token", "令牌"},
	"signin.help":     {"Paste the operator token, or the console token you were given.", "请粘贴运营令牌，或发给您的控制台令牌。"},
	"signin.refused":  {"This token is not valid, or was revoked.", "令牌无效或已被吊销。"},
	"overview":        {"Overview", "概览"},
	"programs":        {"Programs", "补贴计划"},
	"entities":        {"Entities", "主体"},
	"entity":          {"Entity", "主体"},
	"providers":       {"Providers", "算力提供方"},
	"provider":        {"Provider", "算力提供方"},
	"node":            {"Node", "节点"},
	"claims":          {"Claims", "申领"},
	"claim":           {"Claim", "申领"},
	"statement":       {"Statement", "对账单"},
	"reviews":         {"Review queue", "审核队列"},
	"audit":           {"Audit trail", "审计记录"},
	"voucher":         {"Voucher", "算力券"},
	"vouchers":        {"Vouchers", "算力券"},
	"signed in as":    {"Signed in as", "当前身份"},
	"role.operator":   {"program officer", "计划管理员"},
	"role.provider":   {"provider", "算力提供方"},
	"role.entity":     {"entity", "用券主体"},
	"period":          {"Period", "期间"},
	"from":            {"From", "起"},
	"to":              {"To", "止"},
	"show":            {"Show", "显示"},
	"filter":          {"Filter", "筛选"},
	"export":          {"Export", "导出"},
	"previous":        {"Previous", "上一页"},
	"next":            {"Next", "下一页"},
	"page":            {"Page", "页"},
	"of":              {"of", "/"},
	"rows":            {"rows", "行"},
	"none":            {"Nothing to show.", "暂无数据。"},
	"budgets":         {"Budget per program", "各计划预算"},
	"gpu hours day":   {"GPU-hours per day", "每日 GPU 小时"},
	"gpu hours prov":  {"GPU-hours per provider", "各提供方 GPU 小时"},
	"gpu hours model": {"GPU-hours per model", "各型号 GPU 小时"},
	"expiring":        {"Vouchers expiring within 30 days", "30 天内到期的算力券"},
	"program":         {"Program", "计划"},
	"name":            {"Name", "名称"},
	"issuer":          {"Issuer", "发行方"},
	"ratio":           {"Ratio", "补贴比例"},
	"cap year":        {"Cap per entity-year", "每主体年度上限"},
	"valid from":      {"Valid from", "生效"},
	"valid to":        {"Valid to", "失效"},
	"committed":       {"Committed", "已承诺"},
	"balance":         {"Balance", "余额"},
	"paid":            {"Paid", "已支付"},
	"held":            {"Held", "暂扣"},
	"face":            {"Face value", "面额"},
	"issued":          {"Issued", "发放"},
	"expires":         {"Expires", "到期"},
	"status":          {"Status", "状态"},
	"history":         {"History", "使用记录"},
	"record":          {"Record", "记录"},
	"tenant":          {"Tenant", "租户"},
	"window start":    {"Window start", "时段开始"},
	"amount":          {"Amount", "金额"},
	"review":          {"Review", "审核"},
	"nodes":           {"Nodes", "节点"},
	"gpus":            {"GPUs", "GPU"},
	"models":          {"Models", "型号"},
	"model":           {"Model", "型号"},
	"last report":     {"Last report", "最近上报"},
	"coverage":        {"Coverage (7 days)", "覆盖率（7 天）"},
	"forked":          {"Forked", "分叉"},
	"refusals":        {"Refusals", "拒收"},
	"yes":             {"yes", "是"},
	"no":              {"no", "否"},
	"day":             {"Day", "日期"},
	"gpu hours":       {"GPU-hours", "GPU 小时"},
	"cost":            {"Cost", "费用"},
	"subsidy":         {"Subsidy", "补贴"},
	"payable":         {"Payable", "应付"},
	"records":         {"Records", "记录数"},
	"lines":           {"Lines", "明细"},
	"by voucher":      {"Claimable per voucher", "按算力券申领"},
	"reason":          {"Reason", "原因"},
	"note":            {"Note", "备注"},
	"approve":         {"Approve", "批准"},
	"reject":          {"Reject", "驳回"},
	"decided by":      {"Decided by", "处理人"},
	"at":              {"At", "时间"},
	"actor":           {"Actor", "操作人"},
	"action":          {"Action", "操作"},
	"details":         {"Details", "详情"},
	"received":        {"Received", "接收时间"},
	"cause":           {"Cause", "原因"},
	"detail":          {"Detail", "说明"},
	"registered":      {"Registered", "登记"},
	"retired":         {"Retired", "退役"},
	"choose provider": {"Choose a provider", "选择提供方"},
	"choose entity":   {"Entity id", "主体编号"},
	"total":           {"Total", "合计"},
	"decision saved":  {"Decision saved.", "已保存审核结果。"},
	"reason required": {"A rejection needs a reason.", "驳回须填写原因。"},
	"language":        {"中文", "English"},
	"seq":             {"Sequence number", "序号"},
	"batch":           {"Signed batch (sequence numbers)", "签名批次（序号）"},
	"batch hash":      {"Batch hash", "批次哈希"},
	"log leaf":        {"Log leaf index", "日志叶索引"},
	"not in log":      {"not in the verifiable log", "不在可验证日志中"},
	"window end":      {"Window end", "时段结束"},
	"grants":          {"Paid by vouchers", "算力券支付"},
	// Status words, as stored (statusText).
	"status.active":    {"active", "有效"},
	"status.suspended": {"suspended", "已暂停"},
	"status.revoked":   {"revoked", "已吊销"},
	"status.expired":   {"expired", "已过期"},
	"status.held":      {"held", "暂扣待审"},
	"status.approved":  {"approved", "已批准"},
	"status.rejected":  {"rejected", "已驳回"},
	"status.paid":      {"paid", "已支付"},
}

// statusText is a stored status word (a voucher's, a review's) in lang;
// a word without a translation shows as stored.
func statusText(lang, status string) string {
	if _, ok := messages["status."+status]; !ok {
		return status
	}
	return text(lang, "status."+status)
}

// text is key in lang.
func text(lang, key string) string {
	m, ok := messages[key]
	if !ok {
		return key
	}
	if lang == "zh-CN" {
		return m[1]
	}
	return m[0]
}

// yuan shows fen as CNY with two decimals, in integer arithmetic.
func yuan(f billing.Fen) string { return "¥" + billing.FormatYuan(f) }

// hours shows GPU milliseconds as hours with two decimals, in integers.
func hours(ms int64) string {
	h := (ms + 18_000) / 36_000 // hundredths of an hour, rounded
	return strconv.FormatInt(h/100, 10) + "." + pad2(h%100)
}

func pad2(n int64) string {
	if n < 10 {
		return "0" + strconv.FormatInt(n, 10)
	}
	return strconv.FormatInt(n, 10)
}

func (c *Console) funcs(lang string) template.FuncMap {
	return template.FuncMap{
		"t":    func(key string) string { return text(lang, key) },
		"lang": func() string { return lang },
		"other": func() string {
			if lang == "zh-CN" {
				return "en"
			}
			return "zh-CN"
		},
	}
}

// when shows t in the console's zone.
func (c *Console) when(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.In(c.loc).Format("2006-01-02 15:04")
}

func (c *Console) date(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.In(c.loc).Format(time.DateOnly)
}
