package fsm

import (
	"database/sql"
	"encoding/json"
	"fmt"
	"reflect"
	"sync"
)

// Command is a command payload. Validate checks what can be checked without the state (field forms,
// lengths, enumerations); the cluster calls it before proposing, so that apply holds only the checks
// against the state. Validation rules may tighten from one release to the next; apply must not, or a
// log written by an older release would replay differently on a newer one.
type Command interface {
	Validate() error
}

// cacheEffect says what applying a command does to the lookups cache (lookups.go).
type cacheEffect uint8

const (
	// dropsLookups: the command may change a registry or catalogue row the cache holds.
	dropsLookups cacheEffect = iota
	// keepsLookups: the command changes only consents, receipts and the like, which are never cached;
	// the commands every exchange writes are of this kind, so they leave the cache warm.
	keepsLookups
)

// entry is one command in the registry: its payload type, how it applies, what it does to the cache.
type entry struct {
	payload reflect.Type
	apply   handler
	effect  cacheEffect
}

// handler applies a payload inside the batch's transaction. The bool it returns says whether the
// directory changed.
type handler func(tx *sql.Tx, payload []byte) (Result, bool, error)

// command makes a registry entry from a typed apply function: the payload type is the function's, so a
// payload that is not a Command, or an apply function for another payload, does not compile.
func command[T any, P interface {
	*T
	Command
}](apply func(tx *sql.Tx, cmd P) (Result, bool, error), effect cacheEffect) entry {
	return entry{
		payload: reflect.TypeFor[P](),
		effect:  effect,
		apply: func(tx *sql.Tx, payload []byte) (Result, bool, error) {
			var cmd T
			if err := json.Unmarshal(payload, &cmd); err != nil {
				return Result{}, false, fmt.Errorf("decode %T: %w", cmd, err)
			}
			return apply(tx, &cmd)
		},
	}
}

// registry is every command the state machine knows, by type: adding a command is a Type constant, its
// payload (a Command) and apply function, and one line here.
var registry = map[Type]entry{
	TypeOrgAdd:              command(applyOrgAdd, dropsLookups),
	TypeConnectorAdd:        command(applyConnectorAdd, dropsLookups),
	TypeConnectorStatus:     command(applyConnectorStatus, dropsLookups),
	TypeTokenCreate:         command(applyTokenCreate, dropsLookups),
	TypeEnroll:              command(applyEnroll, dropsLookups),
	TypeCertRecord:          command(applyCertRecord, dropsLookups),
	TypeTokenPurge:          command(applyTokenPurge, dropsLookups),
	TypeDatasetAdd:          command(applyDatasetAdd, dropsLookups),
	TypeDatasetStatus:       command(applyDatasetStatus, dropsLookups),
	TypeServiceAdd:          command(applyServiceAdd, dropsLookups),
	TypeConnectorKey:        command(applyConnectorKey, dropsLookups),
	TypeHubKey:              command(applyHubKey, dropsLookups),
	TypeConsentCreate:       command(applyConsentCreate, keepsLookups),
	TypeConsentDecide:       command(applyConsentDecide, keepsLookups),
	TypeConsentUse:          command(applyConsentUse, keepsLookups),
	TypeConsentRevoke:       command(applyConsentRevoke, keepsLookups),
	TypeReceiptAdd:          command(applyReceiptAdd, keepsLookups),
	TypeReceiptsAdd:         command(applyReceiptsAdd, keepsLookups),
	TypeConsentRecord:       command(applyConsentRecord, keepsLookups),
	TypeNodeTokenCreate:     command(applyNodeTokenCreate, keepsLookups),
	TypeNodeJoin:            command(applyNodeJoin, keepsLookups),
	TypeNodeInfo:            command(applyNodeInfo, keepsLookups),
	TypeNodeRemove:          command(applyNodeRemove, keepsLookups),
	TypeNodeTokenPurge:      command(applyNodeTokenPurge, keepsLookups),
	TypeKeyringAdd:          command(applyKeyringAdd, keepsLookups),
	TypeKeyringPurge:        command(applyKeyringPurge, keepsLookups),
	TypeConsentForget:       command(applyConsentForget, keepsLookups),
	TypeConsentRedact:       command(applyConsentRedact, keepsLookups),
	TypeRenew:               command(applyRenew, dropsLookups),
	TypePasskeyAdd:          command(applyPasskeyAdd, keepsLookups),
	TypePasskeyUse:          command(applyPasskeyUse, keepsLookups),
	TypePasskeyRemove:       command(applyPasskeyRemove, keepsLookups),
	TypeOTPPut:              command(applyOTPPut, keepsLookups),
	TypeOTPTry:              command(applyOTPTry, keepsLookups),
	TypeThrottleFail:        command(applyThrottleFail, keepsLookups),
	TypeThrottleClear:       command(applyThrottleClear, keepsLookups),
	TypeContactSet:          command(applyContactSet, keepsLookups),
	TypeMethodUsed:          command(applyMethodUsed, keepsLookups),
	TypeIdentityPurge:       command(applyIdentityPurge, keepsLookups),
	TypeOperatorAdd:         command(applyOperatorAdd, dropsLookups),
	TypeOperatorStatus:      command(applyOperatorStatus, dropsLookups),
	TypeOperatorTokenCreate: command(applyOperatorTokenCreate, keepsLookups),
	TypeOperatorEnroll:      command(applyOperatorEnroll, keepsLookups),
	TypeOperatorRenew:       command(applyOperatorRenew, keepsLookups),
	// An operator action may carry any admin command, so it drops the cache whatever it carries.
	TypeOperatorAction:  command(applyOperatorAction, dropsLookups),
	TypeOutboxClaim:     command(applyOutboxClaim, keepsLookups),
	TypeOutboxResult:    command(applyOutboxResult, keepsLookups),
	TypeCounterRecord:   command(applyCounterRecord, keepsLookups),
	TypeCounterOTPSent:  command(applyCounterOTPSent, keepsLookups),
	TypeCounterUse:      command(applyCounterUse, keepsLookups),
	TypeCounterForget:   command(applyCounterForget, keepsLookups),
	TypeDownloadRecord:  command(applyDownloadRecord, keepsLookups),
	TypeDownloadPending: command(applyDownloadPending, keepsLookups),
	// An approved application may add or change an organisation, a service or a dataset.
	TypeApplicationSubmit: command(applyApplicationSubmit, keepsLookups),
	TypeApplicationReview: command(applyApplicationReview, keepsLookups),
	TypeApplicationDecide: command(applyApplicationDecide, dropsLookups),
	TypeCalendarLoad:      command(applyCalendarLoad, keepsLookups),
	TypeLifecycleTick:     command(applyLifecycleTick, dropsLookups),
	TypeSuspend:           command(applySuspend, dropsLookups),
	TypeRecordsPurge:      command(applyRecordsPurge, keepsLookups),
	TypeDatasetConnectors: command(applyDatasetConnectors, dropsLookups),
	TypeTicketClaim:       command(applyTicketClaim, keepsLookups),
	TypeTicketRelease:     command(applyTicketRelease, keepsLookups),
	// Reports of connectors heard from write the liveness table only; the check that marks them down or
	// up changes the directory.
	TypeConnectorsSeen:     command(applyConnectorsSeen, keepsLookups),
	TypeConnectorsLiveness: command(applyConnectorsLiveness, dropsLookups),
	TypeConnectorAddress:   command(applyConnectorAddress, dropsLookups),
}

// typeOf finds a payload's command type.
var typeOf = sync.OnceValue(func() map[reflect.Type]Type {
	m := make(map[reflect.Type]Type, len(registry))
	for t, e := range registry {
		m[e.payload] = t
	}
	return m
})

// Encode makes the log entry for a command: its type, the payload version and the payload as JSON.
func Encode(cmd Command) ([]byte, error) {
	t, ok := typeOf()[reflect.TypeOf(cmd)]
	if !ok {
		return nil, fmt.Errorf("fsm: %T is not in the command registry", cmd)
	}
	payload, err := json.Marshal(cmd)
	if err != nil {
		return nil, err
	}
	return append([]byte{byte(t), payloadV1}, payload...), nil
}

// Validate checks a command before it is proposed; a refusal is an *Error with code Invalid.
func Validate(cmd Command) error {
	if err := cmd.Validate(); err != nil {
		return &Error{Code: Invalid, Message: err.Error()}
	}
	return nil
}
