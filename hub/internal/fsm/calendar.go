package fsm

import (
	"bufio"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"
)

// The working-day calendar: changes, suspensions and terminations are filed at least NoticeWorkdays
// working days before they take effect (介接作業要點 5(2), 6(3)). A working day is Monday to Friday unless
// the calendar names it a holiday, and a Saturday or Sunday the calendar names a make-up workday (補行上班).
// The operator loads a year at a time (`mydata-hub admin calendar load FILE`); a notice that reaches into
// a year without one is refused, rather than counted on a guess.

// NoticeWorkdays is the notice a change, suspension or termination needs.
const NoticeWorkdays = 7

// Taipei is the federation's calendar time zone: a day takes effect at its midnight there. A fixed
// offset (Taiwan keeps no daylight saving time) so that every node computes the same instant without a
// time zone database.
var Taipei = time.FixedZone("Asia/Taipei", 8*60*60)

// Calendar day kinds.
const (
	DayHoliday = "holiday"
	DayWorkday = "workday"
)

// CalendarDay is a day the calendar names: a holiday on a weekday, or a workday on a weekend.
type CalendarDay struct {
	Date string `json:"date"` // YYYY-MM-DD
	Kind string `json:"kind"`
	Note string `json:"note,omitempty"`
}

// CalendarLoad puts a year's calendar in force, replacing the one loaded before for that year.
type CalendarLoad struct {
	Year int           `json:"year"`
	Days []CalendarDay `json:"days"`
	Now  time.Time     `json:"now"`
}

// ParseCalendar reads a calendar file: one day a line, "YYYY-MM-DD holiday|workday [note]"; blank lines
// and lines starting with # are skipped. Every date must be of one year.
func ParseCalendar(r io.Reader) (*CalendarLoad, error) {
	c := &CalendarLoad{}
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Fields(line)
		if len(f) < 2 {
			return nil, fmt.Errorf("line %d: want YYYY-MM-DD holiday|workday [note]", n)
		}
		d := CalendarDay{Date: f[0], Kind: f[1], Note: strings.Join(f[2:], " ")}
		t, err := time.Parse(time.DateOnly, d.Date)
		if err != nil {
			return nil, fmt.Errorf("line %d: %q is not a date YYYY-MM-DD", n, d.Date)
		}
		if c.Year == 0 {
			c.Year = t.Year()
		}
		if t.Year() != c.Year {
			return nil, fmt.Errorf("line %d: %s is not in %d: a file holds one year", n, d.Date, c.Year)
		}
		c.Days = append(c.Days, d)
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if c.Year == 0 {
		return nil, errors.New("the calendar names no day")
	}
	return c, c.Validate()
}

func (c *CalendarLoad) Validate() error {
	if c.Year < 2000 || c.Year > 2200 {
		return fmt.Errorf("year: %d", c.Year)
	}
	seen := map[string]bool{}
	for _, d := range c.Days {
		t, err := time.Parse(time.DateOnly, d.Date)
		if err != nil || t.Year() != c.Year {
			return fmt.Errorf("date %q is not a day of %d", d.Date, c.Year)
		}
		if seen[d.Date] {
			return fmt.Errorf("date %s is given twice", d.Date)
		}
		seen[d.Date] = true
		weekend := t.Weekday() == time.Saturday || t.Weekday() == time.Sunday
		switch {
		case d.Kind == DayHoliday && weekend:
			return fmt.Errorf("%s is a %s: a weekend is no working day anyway; name holidays on weekdays only", d.Date, t.Weekday())
		case d.Kind == DayWorkday && !weekend:
			return fmt.Errorf("%s is a %s: a make-up workday falls on a weekend", d.Date, t.Weekday())
		case d.Kind != DayHoliday && d.Kind != DayWorkday:
			return fmt.Errorf("%s: kind %q is not holiday or workday", d.Date, d.Kind)
		}
		if len(d.Note) > 200 {
			return fmt.Errorf("%s: note at most 200 bytes", d.Date)
		}
	}
	return nil
}

func applyCalendarLoad(tx *sql.Tx, c *CalendarLoad) (Result, bool, error) {
	if _, err := tx.Exec(`DELETE FROM calendar_days WHERE year = ?`, c.Year); err != nil {
		return Result{}, false, err
	}
	if _, err := tx.Exec(`INSERT INTO calendar_years(year, loaded_at) VALUES (?, ?) ON CONFLICT(year) DO UPDATE SET loaded_at = excluded.loaded_at`, c.Year, ms(c.Now)); err != nil {
		return Result{}, false, err
	}
	for _, d := range c.Days {
		if _, err := tx.Exec(`INSERT INTO calendar_days(date, year, kind, note) VALUES (?, ?, ?, ?)`, d.Date, c.Year, d.Kind, d.Note); err != nil {
			return Result{}, false, err
		}
	}
	return Result{}, false, nil
}

// calendar answers working-day questions from the loaded years.
type calendar struct {
	q     queryRower
	years map[int]bool
}

// workday says whether a date (in Taipei) is a working day; an error names a year with no calendar.
func (c *calendar) workday(day time.Time) (bool, error) {
	y := day.Year()
	loaded, ok := c.years[y]
	if !ok {
		var n int
		if err := c.q.QueryRow(`SELECT count(*) FROM calendar_years WHERE year = ?`, y).Scan(&n); err != nil {
			return false, err
		}
		loaded = n > 0
		if c.years == nil {
			c.years = map[int]bool{}
		}
		c.years[y] = loaded
	}
	if !loaded {
		return false, &Error{Code: Invalid, Message: fmt.Sprintf("no working-day calendar for %d is loaded: mydata-hub admin calendar load FILE", y)}
	}
	var kind string
	err := c.q.QueryRow(`SELECT kind FROM calendar_days WHERE date = ?`, day.Format(time.DateOnly)).Scan(&kind)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return false, err
	}
	switch kind {
	case DayHoliday:
		return false, nil
	case DayWorkday:
		return true, nil
	}
	return day.Weekday() != time.Saturday && day.Weekday() != time.Sunday, nil
}

// NoticeDeadline is the last day (in Taipei) a change taking effect on day may be filed: NoticeWorkdays
// working days before it, counting back from the day before.
func (c *calendar) noticeDeadline(day time.Time) (time.Time, error) {
	d := day
	for left := NoticeWorkdays; left > 0; {
		d = d.AddDate(0, 0, -1)
		ok, err := c.workday(d)
		if err != nil {
			return time.Time{}, err
		}
		if ok {
			left--
		}
	}
	return d, nil
}

// Day is a date's midnight in Taipei; ok false if s is not YYYY-MM-DD.
func Day(s string) (time.Time, bool) {
	t, err := time.ParseInLocation(time.DateOnly, s, Taipei)
	return t, err == nil
}

// DayOf is the Taipei date of an instant.
func DayOf(t time.Time) time.Time {
	y, m, d := t.In(Taipei).Date()
	return time.Date(y, m, d, 0, 0, 0, 0, Taipei)
}

// NoticeDeadline is the last day a change taking effect on day may be filed, on the loaded calendar.
func (f *FSM) NoticeDeadline(day time.Time) (time.Time, error) {
	c := &calendar{q: f.db}
	return c.noticeDeadline(day)
}

// CalendarDays lists the days a loaded year names.
func (f *FSM) CalendarDays(year int) ([]CalendarDay, error) {
	rows, err := f.db.Query(`SELECT date, kind, note FROM calendar_days WHERE year = ? ORDER BY date`, year)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []CalendarDay{}
	for rows.Next() {
		var d CalendarDay
		if err := rows.Scan(&d.Date, &d.Kind, &d.Note); err != nil {
			return nil, err
		}
		out = append(out, d)
	}
	return out, rows.Err()
}
