// Package twodocs is the "two documents" login (雙證件驗證) for citizens without a card reader: the national
// ID plus the NHI card number (健保卡卡號) and one more document, either the household registration number
// (戶號, from the 戶口名簿) or the ID card's issue date and issue type (身分證領補換日期, 初發/補發/換發). The hub
// asks a document registry over HTTPS whether they belong together (on the real platform, the household
// registration and NHI systems); pkg/docregistry holds the wire format of that check and a sample registry
// for the demo and tests.
//
// The package parses what the citizen typed (untrusted input, each problem reported as a FieldError naming
// the form field), and Client.Check asks the registry. It keeps no state and no counters.
//
// # Threat model
//
// These documents identify, they do not authenticate strongly: they are printed on cards that are shown at
// counters and copied onto forms, and spouses, parents and children usually know them or can read them off
// the household register at home. So:
//
//   - the method gives at most a medium assurance level, never high; the portal's configuration sets it;
//   - the first time a national ID logs in this way, the portal must also ask for a one-time code sent to a
//     contact address registered earlier (a second factor), so that knowing the documents is not enough;
//   - the portal rate-limits tries per national ID and per client and counts only ErrMismatch as a failed
//     try; ErrUnavailable and ErrProtocol are the hub's or the registry's fault, and a FieldError is a typo
//     caught before the registry was asked;
//   - the registry answers only match or no match, the same for an unknown national ID as for wrong
//     documents, so it does not tell who is registered;
//   - neither this package nor the sample registry logs the national ID or the documents, and errors carry
//     neither (nor the registry's response body, which might echo them).
package twodocs
