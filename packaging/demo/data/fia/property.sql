-- fia.property: the Fiscal Information Agency's register of a citizen's property (財產資料: land, buildings,
-- vehicles), as the demo's fia-dp connector reads it through its sql backend. Synthetic: every person,
-- parcel, address and plate here is fictional. packaging/demo/data/mkdb turns this file into the SQLite
-- database the demo and the browser test use; B220713459 owns nothing, so the bank sees "no record".
CREATE TABLE property (
	national_id    TEXT    NOT NULL,
	seq            INTEGER NOT NULL,
	kind           TEXT    NOT NULL, -- 土地 Land, 建物 Building, 車輛 Vehicle
	item           TEXT    NOT NULL, -- land parcel, building address, or vehicle plate and type
	location       TEXT    NOT NULL,
	area_m2        REAL,             -- none for vehicles
	share          TEXT    NOT NULL, -- the owner's share, e.g. 1/2
	assessed_value INTEGER,          -- TWD: announced land value, or assessed building value; none for vehicles
	PRIMARY KEY (national_id, seq)
);

INSERT INTO property VALUES
	('A123456789', 1, '土地 Land',     '示範段一小段 0123-0000 地號',         '臺北市大安區 Da''an Dist., Taipei City',     38.25, '1/2', 9180000),
	('A123456789', 2, '建物 Building', '示範路一段100號5樓',                  '臺北市大安區 Da''an Dist., Taipei City',    112.60, '1/2', 1215000),
	('A123456789', 3, '車輛 Vehicle',  'DEM-0001 自用小客車 Private car (2019)', '臺北市 Taipei City',                        NULL, '1/1', NULL),
	('F132604985', 1, '車輛 Vehicle',  'DEM-0123 普通重型機車 Scooter (2021)',  '新北市 New Taipei City',                    NULL, '1/1', NULL),
	('E225810349', 1, '土地 Land',     '範例段二小段 0456-0000 地號',         '高雄市苓雅區 Lingya Dist., Kaohsiung City',  72.40, '1/1', 6878000),
	('E225810349', 2, '建物 Building', '範例街20號',                          '高雄市苓雅區 Lingya Dist., Kaohsiung City', 185.30, '1/1', 1043000),
	('E225810349', 3, '建物 Building', '測試路8號7樓',                        '高雄市鼓山區 Gushan Dist., Kaohsiung City',  98.10, '1/1',  842000),
	('H120945179', 1, '車輛 Vehicle',  'DEM-0456 普通重型機車 Scooter (2020)',  '桃園市 Taoyuan City',                       NULL, '1/1', NULL);
