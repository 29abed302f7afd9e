package hubapi

// Stages a service or a dataset moves through, each step an approved application (介接作業要點 5(1):
// 介接測試與試辦、上線): sandbox answers from synthetic data only, pilot serves real data to the test
// subjects listed on the application, production serves every citizen.
const (
	StageSandbox    = "sandbox"
	StagePilot      = "pilot"
	StageProduction = "production"
)

// Stages are the stages in the order a service or dataset moves through them.
var Stages = []string{StageSandbox, StagePilot, StageProduction}

// StageOf is the stage a record is at: one with no stage was added by the federation administrator
// directly (or before stages existed) and is in production.
func StageOf(stage string) string {
	if stage == "" {
		return StageProduction
	}
	return stage
}

// NextStage is the stage an application moves a record at stage to: sandbox for a new one (stage ""
// with exists false), "" when it is in production already.
func NextStage(stage string, exists bool) string {
	if !exists {
		return StageSandbox
	}
	switch StageOf(stage) {
	case StageSandbox:
		return StagePilot
	case StagePilot:
		return StageProduction
	}
	return ""
}

// StatusTerminated is a service or dataset that left the federation on an approved termination; it
// comes back on an approved resumption.
const StatusTerminated = "terminated"
